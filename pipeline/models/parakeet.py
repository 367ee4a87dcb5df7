"""Parakeet CTC (`ParakeetForCTC`, e.g. nvidia/parakeet-ctc-1.1b) behind the CTC stage's
model adapter: audio in, greedy frames out, each item as if it had run alone.

Features: `pipeline/models/parakeet_features.py` computes the extractor's log-mel on the
model's device (the extractor itself cannot leave the CPU, and in transformers 5.17 it
needs librosa).

Frame arithmetic (published config, 16 kHz): `ParakeetFeatureExtractor` gives
`samples // 160` valid log-mel frames (centred 400-sample windows, one every 160
samples), and three stride-2 convs (kernel 3, padding 1) subsample them 8x, so one logit
frame per 1,280 samples (80 ms), frame `o` starting at sample `1280 o`. The extractor
normalises each mel bin over the item's frames with an unbiased variance (divides by
frames - 1), so an item needs two frames (320 samples): one frame gives NaN features.

Why a padded batch gives each item its own logits (measured in
`tests/models/test_parakeet.py`), without any masking of our own:
- the extractor normalises each item over its own frames and zeroes the rest, so padded
  frames are exactly the zeros a single item's conv padding and STFT padding add;
- the subsampling convs zero each layer's output past the item's length (conv biases
  would otherwise write into padding and the next layer would read it);
- attention masks padded keys, and the conformer convolution module zeroes padded
  frames before its depthwise conv. Everything else acts frame by frame (batch norm is
  a fixed affine map in eval mode).
All of that needs the attention mask, which the adapter always passes.

Parakeet's tokenizer is a SentencePiece-style `ParakeetTokenizer` ("▁" starts a word)
that can decode CTC ids but has no word offsets and no word delimiter; `PieceCtcDecoder`
adds the two, the way `Wav2Vec2CTCTokenizer.decode(output_word_offsets=True)` reports
them, so the stage's word timestamps work unchanged.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from pipeline.models.ctc_model import SampleCost
from pipeline.models.device import autocast
from pipeline.models.parakeet_features import ParakeetFeatures

WORD_START = "▁"  # SentencePiece's word-boundary marker


@dataclass
class DecodedWords:
    """What the stage reads from `decode(..., output_word_offsets=True)`."""

    text: str
    word_offsets: list[dict]  # {"word", "start_offset", "end_offset"}: frames, end exclusive


class PieceCtcDecoder:
    """CTC decoding with word offsets over a SentencePiece-style tokenizer.

    `decode(ids)` is the tokenizer's own CTC decode (repeats merged, blanks dropped),
    which is what `pipeline("automatic-speech-recognition")` returns as text.
    """

    word_delimiter_token = WORD_START

    def __init__(self, tokenizer: Any) -> None:
        self.inner = tokenizer
        self.pad_token_id: int = tokenizer.pad_token_id  # the CTC blank

    def decode(self, ids: Any, output_word_offsets: bool = False) -> Any:
        ids = [int(i) for i in ids]
        text = self.inner.decode(ids)
        if not output_word_offsets:
            return text
        return DecodedWords(text, self._word_offsets(ids))

    def _word_offsets(self, ids: list[int]) -> list[dict]:
        """A word runs from a token whose piece starts with "▁" to the next such token;
        its frames are those of its tokens' runs, a lone "▁" token's excepted."""
        words: list[list[tuple[int, int, int]]] = []  # per word: (id, first frame, end frame)
        frame = 0
        for token, run in itertools.groupby(ids):
            start, frame = frame, frame + len(list(run))
            if token == self.pad_token_id:
                continue
            piece = self.inner.convert_ids_to_tokens(token)
            if piece.startswith(WORD_START) or not words:
                words.append([])
            if piece != WORD_START:
                words[-1].append((token, start, frame))
        # Each token here is already one run: regrouping would merge a letter that the
        # blank between two runs made double ("x", blank, "x" is "xx").
        return [
            {
                "word": self.inner.decode([t for t, _, _ in w], group_tokens=False),
                "start_offset": w[0][1],
                "end_offset": w[-1][2],
            }
            for w in words
            if w
        ]


@dataclass
class ParakeetCtcModel(SampleCost):
    """A loaded Parakeet CTC checkpoint: predicts per-frame ids/probs for a micro-batch."""

    name: str  # the model URI as given in the spec (recorded in the output)
    model: Any  # a transformers `ParakeetForCTC` in eval mode, on `device`, in `dtype`
    features: ParakeetFeatures  # the extractor's log-mel, on `device`
    tokenizer: Any  # given the checkpoint's ParakeetTokenizer; holds a PieceCtcDecoder
    device: str
    dtype: torch.dtype
    sampling_rate: int = field(init=False)
    samples_per_frame: int = field(init=False)
    receptive_field: int = field(init=False)  # fewest samples that give one logit frame
    _subsampling: tuple[int, int, int, int] = field(init=False)  # layers, kernel, stride, pad
    too_short_note = " (two feature frames; one gives NaN features)"  # not a field

    def __post_init__(self) -> None:
        extractor, enc = self.features.config, self.model.config.encoder_config
        self.sampling_rate = int(extractor.sampling_rate)
        kernel, stride = enc.subsampling_conv_kernel_size, enc.subsampling_conv_stride
        layers = int(math.log2(enc.subsampling_factor))
        self._subsampling = (layers, kernel, stride, (kernel - 1) // 2)
        self.samples_per_frame = int(extractor.hop_length) * stride**layers
        # Two feature frames: the extractor's unbiased variance divides by frames - 1.
        self.receptive_field = 2 * int(extractor.hop_length)
        if not isinstance(self.tokenizer, PieceCtcDecoder):
            self.tokenizer = PieceCtcDecoder(self.tokenizer)

    @property
    def frame_duration(self) -> float:
        """Seconds between consecutive logit frames."""
        return self.samples_per_frame / self.sampling_rate

    def feature_frames(self, samples: int) -> int:
        """Valid log-mel frames the extractor gives `samples` samples (its own formula)."""
        return self.features.config.frames(samples)

    def frames(self, samples: int) -> int:
        """Logit frames for an item of `samples` samples (0: shorter than two feature frames)."""
        n = self.feature_frames(samples)
        if n < 2:
            return 0
        layers, kernel, stride, pad = self._subsampling
        for _ in range(layers):  # the model's `_get_subsampling_output_length`
            n = (n + 2 * pad - kernel) // stride + 1
        return n

    def logits(self, audio: list[np.ndarray]) -> tuple[torch.Tensor, list[int]]:
        """Padded logits [batch, frames, vocab] and each item's valid frame count.

        Raises ValueError when an item is shorter than the receptive field.
        """
        frames = self.checked_frames(audio)
        features, mask = self.features(audio)
        features = features.to(self.dtype)
        with torch.inference_mode(), autocast(self.device, self.dtype):
            logits = self.model(input_features=features, attention_mask=mask).logits
        return logits, frames
