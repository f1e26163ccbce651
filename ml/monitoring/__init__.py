"""Watching the published lists across runs: the pilot's outcome readout (``outcomes``) and
the drift and quality monitors between consecutive runs (``drift``)."""
