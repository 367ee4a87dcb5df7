"""Model resolution and loading (hub id, local folder, object-storage prefix)."""
