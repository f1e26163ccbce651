"""Marketplace recommender library: data generation, features, ranking, evaluation, publishing."""
