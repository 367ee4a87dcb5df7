"""Stages: small callable classes over Arrow batches (see `base.Stage`)."""
