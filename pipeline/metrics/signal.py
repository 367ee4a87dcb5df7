"""Signal measures of synthesized speech that need no listener.

All work on mono float32 samples in [-1, 1] at any rate:

- silence: the signal is cut into consecutive 20 ms frames (the last one may be
  shorter); a frame is *silent* when its mean power is below -60 dBFS, or more than
  40 dB below the loudest frame of the item (whichever threshold is higher). So a
  quiet but clean recording still has speech, and hiss under loud speech counts as
  silence. Leading / trailing silence run from the ends to the first / last non-silent
  frame; the *internal* silence share is the share of frames between those two (both
  included) that are silent: long pauses or dropouts inside an utterance.
- speaking rate: characters of the normalised text per second of the span from the
  first to the last non-silent frame (pauses inside it count, the ends do not);
- clipping share: samples with |x| >= 0.999;
- RMS level in dBFS: 20 log10(RMS), full scale 1.0 (a full-scale sine is -3.01 dBFS).

Measures that are undefined (no samples, or nothing above the silence threshold) are
None, never a made-up number.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FRAME_S = 0.02
SILENCE_ABS_DBFS = -60.0
SILENCE_REL_DB = 40.0
CLIP_LEVEL = 0.999
_TINY = 1e-20


@dataclass(frozen=True)
class SignalMetrics:
    """What `measure` found in one signal. Seconds are frame-aligned (20 ms steps)."""

    duration_s: float
    leading_silence_s: float
    trailing_silence_s: float
    speech_span_s: float  # first to last non-silent frame; 0 when there is none
    silence_share: float | None  # internal: silent frames inside the speech span
    clipping_share: float | None
    rms_dbfs: float | None

    @property
    def leading_share(self) -> float | None:
        """Leading silence as a share of the duration."""
        return self.leading_silence_s / self.duration_s if self.duration_s else None

    @property
    def trailing_share(self) -> float | None:
        """Trailing silence as a share of the duration."""
        return self.trailing_silence_s / self.duration_s if self.duration_s else None


def frame_levels(x: np.ndarray, rate: int, frame_s: float = FRAME_S) -> np.ndarray:
    """Mean power of each consecutive frame, in dBFS (the last frame may be shorter)."""
    n = int(round(frame_s * rate))
    if len(x) == 0:
        return np.zeros(0)
    frames = -(-len(x) // n)
    padded = np.zeros(frames * n, dtype=np.float64)
    padded[: len(x)] = x
    power = (padded.reshape(frames, n) ** 2).sum(axis=1)
    counts = np.full(frames, n)
    counts[-1] = len(x) - (frames - 1) * n
    return 10 * np.log10(power / counts + _TINY)


def silent_frames(levels: np.ndarray) -> np.ndarray:
    """True for frames below the silence threshold (see the module doc)."""
    if len(levels) == 0:
        return np.zeros(0, dtype=bool)
    threshold = max(SILENCE_ABS_DBFS, float(levels.max()) - SILENCE_REL_DB)
    return levels < threshold


def measure(x: np.ndarray, rate: int) -> SignalMetrics:
    """Silence, clipping and level of one mono signal (see the module doc)."""
    x = np.asarray(x, dtype=np.float32)
    duration = len(x) / rate
    if len(x) == 0:
        return SignalMetrics(0.0, 0.0, 0.0, 0.0, None, None, None)
    frame = int(round(FRAME_S * rate))
    silent = silent_frames(frame_levels(x, rate))
    voiced = np.flatnonzero(~silent)
    clipping = float(np.mean(np.abs(x) >= CLIP_LEVEL))
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    rms_dbfs = float(20 * np.log10(rms)) if rms > 0 else None
    if len(voiced) == 0:
        return SignalMetrics(duration, duration, 0.0, 0.0, None, clipping, rms_dbfs)
    first, last = int(voiced[0]), int(voiced[-1])
    start, stop = first * frame, min((last + 1) * frame, len(x))
    inside = silent[first : last + 1]
    return SignalMetrics(
        duration_s=duration,
        leading_silence_s=start / rate,
        trailing_silence_s=(len(x) - stop) / rate,
        speech_span_s=(stop - start) / rate,
        silence_share=float(inside.mean()),
        clipping_share=clipping,
        rms_dbfs=rms_dbfs,
    )


def speaking_rate(n_chars: int, metrics: SignalMetrics) -> float | None:
    """Characters per second of the speech span; None without speech."""
    return n_chars / metrics.speech_span_s if metrics.speech_span_s > 0 else None
