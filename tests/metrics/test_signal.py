"""Signal measures on synthetic signals whose answers are known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.metrics.signal import frame_levels, measure, silent_frames, speaking_rate

RATE = 16_000
FRAME = 320  # 20 ms


def tone(seconds: float, amplitude: float = 0.5, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(round(seconds * RATE))) / RATE
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(round(seconds * RATE)), dtype=np.float32)


def test_rms_dbfs_of_a_sine_and_a_constant():
    # A sine of amplitude A has RMS A / sqrt(2): 0.5 -> -9.03 dBFS.
    assert measure(tone(1.0, 0.5), RATE).rms_dbfs == pytest.approx(-9.0309, abs=1e-3)
    assert measure(np.full(RATE, 0.1, np.float32), RATE).rms_dbfs == pytest.approx(-20.0, abs=1e-4)


def test_leading_and_trailing_silence():
    x = np.concatenate([silence(0.5), tone(1.0), silence(0.3)])
    m = measure(x, RATE)
    assert m.duration_s == pytest.approx(1.8)
    assert m.leading_silence_s == pytest.approx(0.5)
    assert m.trailing_silence_s == pytest.approx(0.3)
    assert m.speech_span_s == pytest.approx(1.0)
    assert m.leading_share == pytest.approx(0.5 / 1.8)
    assert m.trailing_share == pytest.approx(0.3 / 1.8)
    assert m.silence_share == 0.0


def test_internal_silence_share_counts_pauses_inside_the_speech_span():
    # 0.4 s tone, 0.2 s pause, 0.4 s tone: a fifth of the span is silent.
    x = np.concatenate([silence(0.1), tone(0.4), silence(0.2), tone(0.4), silence(0.1)])
    m = measure(x, RATE)
    assert m.silence_share == pytest.approx(0.2)
    assert m.speech_span_s == pytest.approx(1.0)


def test_silence_threshold_is_relative_to_the_loudest_frame():
    # Hiss 50 dB below loud speech is silence; the same hiss alone (-63 dBFS) is too.
    hiss = tone(0.4, amplitude=0.001, freq=3000.0)  # about -63 dBFS
    loud = tone(0.4, amplitude=0.5)
    m = measure(np.concatenate([hiss, loud, hiss]), RATE)
    assert m.leading_silence_s == pytest.approx(0.4)
    assert m.trailing_silence_s == pytest.approx(0.4)
    # ...but quiet speech at -40 dBFS alone is not silence (above the -60 dBFS floor).
    quiet = measure(tone(0.4, amplitude=0.014), RATE)
    assert quiet.leading_silence_s == 0.0
    assert quiet.speech_span_s == pytest.approx(0.4)


def test_frame_levels_and_a_short_last_frame():
    x = np.concatenate([tone(0.02, 1.0, freq=500.0), np.full(100, 0.5, np.float32)])  # 10 periods
    levels = frame_levels(x, RATE)
    assert len(levels) == 2
    assert levels[0] == pytest.approx(-3.0103, abs=1e-3)
    assert levels[1] == pytest.approx(-6.0206, abs=1e-3)  # mean over its 100 samples only
    assert silent_frames(levels).tolist() == [False, False]


def test_clipping_share():
    x = tone(1.0, 0.5)
    x[:1600] = 1.0
    x[1600:2400] = -0.9995
    assert measure(x, RATE).clipping_share == pytest.approx(0.15)
    assert measure(tone(1.0, 0.998), RATE).clipping_share == 0.0


def test_all_silent_and_empty_signals_give_none_not_made_up_numbers():
    quiet = measure(silence(1.0), RATE)
    assert quiet.rms_dbfs is None
    assert quiet.silence_share is None
    assert quiet.leading_silence_s == pytest.approx(1.0)
    assert quiet.speech_span_s == 0.0
    assert speaking_rate(20, quiet) is None
    empty = measure(np.zeros(0, np.float32), RATE)
    assert empty.duration_s == 0.0
    assert empty.clipping_share is None
    assert empty.leading_share is None


def test_speaking_rate_is_chars_per_second_of_the_speech_span():
    x = np.concatenate([silence(1.0), tone(2.0), silence(1.0)])
    assert speaking_rate(30, measure(x, RATE)) == pytest.approx(15.0)


def test_other_sample_rates():
    rate = 8000
    t = np.arange(8000) / rate
    x = np.concatenate([np.zeros(4000), 0.5 * np.sin(2 * np.pi * 300 * t)]).astype(np.float32)
    m = measure(x, rate)
    assert m.leading_silence_s == pytest.approx(0.5)
    assert m.duration_s == pytest.approx(1.5)
