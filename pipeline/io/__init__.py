"""Input and output: storage filesystems, shard listing and reading, audio decoding, tables."""
