"""Synthetic corpora and tiny random-init models of the real architectures, for tests,
benchmarks and the demo assets (`pipeline/demo_assets.py`).

No machine here reaches a model hub: these builders write checkpoints (with offline
tokenizers) and corpora (files, WebDataset, Parquet, broken files) that go through the
same code paths a user's hub id and shards take.
"""
