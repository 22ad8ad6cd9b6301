"""Test-wide settings: no persistent compilation cache in the user's home folder."""

import os

os.environ.setdefault("POSEJAX_COMPILATION_CACHE_DIR", "")
