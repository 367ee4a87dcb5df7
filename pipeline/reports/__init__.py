"""Reports built from the written output tables."""
