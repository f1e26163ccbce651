"""Watching what the published lists do: the outcome readout of the pilot (``outcomes``)."""
