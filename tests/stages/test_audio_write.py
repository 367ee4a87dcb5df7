import numpy as np
import pyarrow as pa
import soundfile as sf

from pipeline.columns import AUDIO, ERROR_CODE, ERROR_MESSAGE, ERROR_STAGE, SAMPLE_RATE, TEXT_ID
from pipeline.io.audio_out import audio_key
from pipeline.spec import StorageOptions
from pipeline.stages.audio_write import AudioWriteStage


def _rows(ids, audio, errors=None):
    n = len(ids)
    codes = errors or [None] * n
    return pa.table(
        {
            TEXT_ID: pa.array(ids, pa.string()),
            AUDIO: pa.array(
                [None if a is None else a.tolist() for a in audio], pa.list_(pa.float32())
            ),
            SAMPLE_RATE: pa.array([16000] * n, pa.int32()),
            ERROR_STAGE: pa.array(["read" if c else None for c in codes], pa.string()),
            ERROR_CODE: pa.array(codes, pa.string()),
            ERROR_MESSAGE: pa.array(["x" if c else None for c in codes], pa.string()),
        }
    )


def test_writes_each_item_once_under_a_stable_key(tmp_path):
    tone = (0.5 * np.sin(np.arange(1600) / 5)).astype(np.float32)
    stage = AudioWriteStage("tts", str(tmp_path / "audio"), StorageOptions(), "flac")
    batch = _rows(["a/../b", "c", "d"], [tone, tone[:800], None], [None, None, "empty"])
    out = stage(batch).to_pydict()
    uris = out["tts__audio_uri"]
    assert uris[2] is None and out[ERROR_CODE][2] == "empty"  # an errored row is not written
    for uri, n in zip(uris[:2], (1600, 800), strict=True):
        assert uri.startswith(str(tmp_path / "audio")) and ".." not in uri[len(str(tmp_path)) :]
        data, rate = sf.read(uri, dtype="float32")
        assert rate == 16000 and len(data) == n
        assert np.abs(data - tone[:n]).max() < 1e-4  # 16-bit PCM
    again = stage(batch).to_pydict()["tts__audio_uri"]
    assert again == uris  # a re-run overwrites the same files
    assert len(list((tmp_path / "audio").iterdir())) == 2


def test_a_failed_write_fails_only_that_item(tmp_path):
    stage = AudioWriteStage("tts", str(tmp_path / "audio"), StorageOptions(), "wav")
    (tmp_path / "audio").mkdir()
    # A folder where one item's file should go makes that one write fail.
    (tmp_path / "audio" / audio_key("", "b", "wav").lstrip("/")).mkdir()
    out = stage(_rows(["a", "b"], [np.zeros(400, np.float32)] * 2)).to_pydict()
    assert out[ERROR_CODE] == [None, "write_failed"]
    assert out[ERROR_STAGE][1] == "tts_write" and "writing" in out[ERROR_MESSAGE][1]
    assert out["tts__audio_uri"][0] is not None and out["tts__audio_uri"][1] is None
