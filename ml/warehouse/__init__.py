"""The build database: running dbt, reading what it built (datasets, time scale, contracts, profile)."""
