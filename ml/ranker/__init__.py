"""The ranker: features, the suitable / not-suitable classifier, its training, judging and scoring."""
