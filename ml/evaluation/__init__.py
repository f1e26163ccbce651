"""How a list is scored, independent of any model: ranking metrics, bootstrap intervals, time splits."""
