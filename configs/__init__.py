"""Experiment configs (`get_config()` per file); variants import `configs.default`."""
