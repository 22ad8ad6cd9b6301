"""The run config: its validation, its typed frozen pieces, and the listing of its fields."""
