"""Experiments that run several recipes and compare them."""
