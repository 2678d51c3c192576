"""Benchmarks (not tests): each module prints figures against a baseline measured in the same run."""
