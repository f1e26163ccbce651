"""Prefect flows: thin orchestration over the ``ml`` library and dbt."""
