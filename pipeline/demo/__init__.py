"""Synthetic corpora and tiny random-init models for the demo job and the tests."""
