"""The export itself: its format and checks, importers of public logs, and the synthetic generator."""
