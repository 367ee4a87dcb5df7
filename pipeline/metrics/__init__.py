"""WER/CER edit counts and signal metrics of synthesized audio (the text normalisers are in `pipeline/text/`)."""
