"""Speech-like synthetic audio and its encoding, for the demo corpus and the tests.

Deterministic per seed: formant-like vowels with a pitch contour and syllable
envelopes, pauses between words, a little noise; length scales with the text.
Not speech, but shaped enough for decoders, resamplers and CTC models to chew on.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
import soxr

FORMATS = ("wav", "flac", "ogg", "opus", "mp3", "m4a")
RATES = (16000, 22050, 44100, 8000, 48000)
SECONDS_PER_CHAR = 0.08
_EDGE_S = 0.1  # silence before and after the "speech"
_SOUNDFILE = {  # format -> (libsndfile container, subtype)
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "opus": ("OGG", "OPUS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}
_WRITE_FRAMES = 16384
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
_VOWELS = {  # F1, F2, F3 in Hz, average adult voice
    "a": (730.0, 1090.0, 2440.0),
    "e": (530.0, 1840.0, 2480.0),
    "i": (270.0, 2290.0, 3010.0),
    "o": (570.0, 840.0, 2410.0),
    "u": (300.0, 870.0, 2240.0),
}
_WORD_LIST = """the a one two three four five red blue green yellow house river stone light
    morning evening quiet loud small large bird window garden city paper music
    road winter summer table water cold warm old new happy tired walks runs sings
    reads opens closes finds carries under over near behind slowly quickly today
    again never always little bright dark friend teacher sister brother"""
_WORDS = tuple(_WORD_LIST.split())


# ---------------------------------------------------------------- synthesis


def speechlike(text: str, rate: int, seed: int) -> np.ndarray:
    """Deterministic audio shaped like speech for `text`: float32 mono in [-0.9, 0.9].

    About `SECONDS_PER_CHAR` per character plus short edges: voiced syllables
    (harmonics of a falling, wavering pitch shaped by vowel formants), a noise
    burst at each syllable onset, pauses at spaces and a faint noise floor. Enough
    structure for length-sorting, VAD-ish and codec behaviour to be realistic.
    """
    rng = np.random.default_rng(seed)
    synth_rate = min(rate, 16000)  # nothing above 8 kHz matters; synthesise cheaply
    n = round((len(text) * SECONDS_PER_CHAR + 2 * _EDGE_S) * synth_rate)
    env, formants, bursts = _syllables(text, synth_rate, n, rng)
    f0 = _pitch(n, synth_rate, rng)
    x = _voice(f0, formants * rng.uniform(0.9, 1.15), synth_rate) * env + bursts
    if synth_rate != rate:
        x = soxr.resample(x, synth_rate, rate, quality="HQ")
    x = x + rng.normal(0.0, 0.002, len(x))
    x *= rng.uniform(0.5, 0.9) / max(float(np.abs(x).max()), 1e-9)
    return np.clip(x, -0.9, 0.9).astype(np.float32)


def _syllables(
    text: str, rate: int, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-sample amplitude envelope, formant tracks (n, 3) and consonant bursts."""
    env, bursts = np.zeros(n), np.zeros(n)
    centres, targets = [0], [_VOWELS["a"]]
    pos = 0
    for word in text.split(" "):
        start, end = (
            _EDGE_S + pos * SECONDS_PER_CHAR,
            _EDGE_S + (pos + len(word)) * SECONDS_PER_CHAR,
        )
        pos += len(word) + 1
        vowels = [c for c in word.lower() if c in _VOWELS] or [str(rng.choice(list(_VOWELS)))]
        bounds = np.linspace(start * rate, end * rate, len(vowels) + 1).astype(int)
        for (a, b), vowel in zip(zip(bounds[:-1], bounds[1:], strict=True), vowels, strict=True):
            env[a:b] = rng.uniform(0.6, 1.0) * np.sin(np.linspace(0, np.pi, b - a)) ** 0.6
            burst = min(b - a, int(0.02 * rate))
            bursts[a : a + burst] = rng.normal(0.0, 0.08, burst)
            centres.append((a + b) // 2)
            targets.append(_VOWELS[vowel])
    centres.append(n - 1)
    targets.append(targets[-1])
    t = np.arange(n)
    formants = np.stack([np.interp(t, centres, [f[j] for f in targets]) for j in range(3)], axis=1)
    return env, formants, bursts


def _pitch(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """A falling pitch contour (declination) with a slow waver, in Hz per sample."""
    t = np.arange(n) / rate
    base = rng.uniform(95.0, 220.0)
    fall = np.linspace(1.12, 0.88, n)
    waver = 1 + 0.06 * np.sin(2 * np.pi * rng.uniform(2.0, 4.0) * t + rng.uniform(0, 2 * np.pi))
    return base * fall * waver


def _voice(f0: np.ndarray, formants: np.ndarray, rate: int) -> np.ndarray:
    """Harmonics of `f0` below 4 kHz, each weighted by its distance to the formants.

    Gains move slowly, so they are computed every few milliseconds and
    interpolated, and sin(k * phase) comes from the Chebyshev recurrence: the
    demo corpus builds in seconds instead of tens of seconds.
    """
    t = np.arange(len(f0))
    grid = t[::64]
    phase = 2 * np.pi * np.cumsum(f0) / rate
    top = min(4000.0, 0.45 * rate)
    two_cos, prev, cur = 2 * np.cos(phase), np.zeros(len(f0)), np.sin(phase)
    out = np.zeros(len(f0))
    for k in range(1, int(top / f0.min()) + 1):
        fk = k * f0[grid]
        gain = sum(
            np.exp(-0.5 * ((fk - formants[grid, j]) / (90.0 + 40 * j)) ** 2) / (j + 1)
            for j in range(3)
        )
        out += np.interp(t, grid, np.where(fk < top, gain / k**0.5, 0.0)) * cur
        prev, cur = cur, two_cos * cur - prev
    return out


def sentence(rng: np.random.Generator, min_words: int = 3, max_words: int = 8) -> str:
    """A random sentence from the built-in word list."""
    words = rng.choice(_WORDS, size=int(rng.integers(min_words, max_words + 1)))
    return " ".join(str(w) for w in words)


def sentences(n: int, seed: int) -> list[str]:
    """`n` reference sentences, the same for the same seed."""
    rng = np.random.default_rng(seed)
    return [sentence(rng) for _ in range(n)]


# ---------------------------------------------------------------- encoding


def stored_rate(rate: int, fmt: str) -> int:
    """The rate a file of `fmt` actually holds (Opus only takes a few rates)."""
    if fmt != "opus" or rate in _OPUS_RATES:
        return rate
    return next((r for r in _OPUS_RATES if r >= rate), _OPUS_RATES[-1])


def encode(samples: np.ndarray, rate: int, fmt: str) -> bytes:
    """Encode (frames,) or (frames, channels) float samples as `fmt` (see `FORMATS`).

    Opus input is resampled to `stored_rate(rate, "opus")`.
    """
    x = np.asarray(samples, dtype=np.float32)
    if fmt == "m4a":
        return _encode_m4a(x.reshape(len(x), -1), rate)
    if fmt not in _SOUNDFILE:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    out_rate = stored_rate(rate, fmt)
    if out_rate != rate:
        x = soxr.resample(x, rate, out_rate, quality="HQ")
    container, subtype = _SOUNDFILE[fmt]
    buf = io.BytesIO()
    channels = 1 if x.ndim == 1 else x.shape[1]
    with sf.SoundFile(buf, "w", out_rate, channels, format=container, subtype=subtype) as f:
        # One big write overflows libvorbis's stack (an alloca per pending sample)
        # and kills the process: https://github.com/libsndfile/libsndfile/issues/1095
        for start in range(0, len(x), _WRITE_FRAMES):
            f.write(x[start : start + _WRITE_FRAMES])
    return buf.getvalue()


def _encode_m4a(x: np.ndarray, rate: int) -> bytes:
    """AAC in an MP4 (ipod) container, through PyAV: libsndfile cannot write it."""
    import av

    layout = "mono" if x.shape[1] == 1 else "stereo"
    buf = io.BytesIO()
    with av.open(buf, "w", format="ipod") as container:
        stream = container.add_stream("aac", rate=rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x.T), format="fltp", layout=layout)
        frame.sample_rate, frame.pts = rate, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return buf.getvalue()
