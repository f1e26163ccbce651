"""`recsys evaluate`: offline experiments on a time split, of the ranker and baselines or of published lists."""
