"""Shared plumbing below everything else: one-line errors, atomic file writes, safe npz reading, the command-line guard, progress bars, device meshes, stop requests, video I/O, folder locks."""
