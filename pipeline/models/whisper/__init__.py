"""Whisper-family transcription (WhisperForConditionalGeneration) behind a small adapter.

One concern per module:
- `load`: resolve and load a checkpoint; its special tokens; encoder and first-step calls;
- `features`: log-mel on the model's device, the feature extractor's arithmetic;
- `processors`: logits processors (timestamp rules, log-prob tracking, keyed sampling);
- `decode`: decoding a batch of 30 s windows, with temperature fallback;
- `longform`: sequential timestamped decoding (segments, seeking), batched across items;
- `align`: word timestamps from cross-attention and dynamic time warping;
- `words`: grouping tokens into words;
- `flags`: likely-hallucination checks on a transcript;
- `result`: one item's columns from its decoded windows.

The stage (`pipeline/stages/whisper.py`) owns rows, micro-batches and errors.
"""
