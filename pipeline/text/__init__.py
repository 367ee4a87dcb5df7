"""Text normalisers: for scoring (`normalize.py`: the named normalisers applied before
WER/CER) and for speech (`speech.py`: written text into words a synthesiser can say)."""
