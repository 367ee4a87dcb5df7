"""Text normalisers and WER/CER edit counts."""
