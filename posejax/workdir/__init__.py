"""A run's folder: its layout, orbax checkpoints, resume, metrics files, and which models of a checkpoint are behind."""
