"""Quality and drift monitoring across runs."""
