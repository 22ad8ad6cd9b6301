"""Human3.6M data: camera tables, action names, file loading, preparation, synthetic data."""
