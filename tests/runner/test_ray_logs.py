import logging
import warnings

import pytest

from pipeline.runner import ray_logs


@pytest.fixture
def restore_filters():
    yield
    for name in ray_logs.QUIET_RECORDS:
        logger = logging.getLogger(name)
        for f in list(logger.filters):
            logger.removeFilter(f)


def test_decoder_noise_is_dropped_and_everything_else_kept():
    noise = (
        "[src/libmpg123/layer3.c:INT123_do_layer3():1774] error: part2_3_length (1152) too large"
    )
    assert not ray_logs.keep_line(noise)
    assert not ray_logs.keep_line("[mp3float @ 0x55d5c2a1b2c0] Header missing")
    assert ray_logs.keep_line("WARNING: model loaded from pytorch_model.bin with torch.load")
    assert ray_logs.keep_line("Traceback (most recent call last):")


def test_filtered_printer_passes_kept_lines_only():
    seen = []
    printer = ray_logs._Filtered(seen.append)
    printer({"pid": 1, "lines": ["[src/libmpg123/x.c:f():1] error: y", "kept"]})
    printer({"pid": 1, "lines": ["[src/libmpg123/x.c:f():1] error: y"]})
    assert seen == [{"pid": 1, "lines": ["kept"]}]


def test_quiet_notices_are_filtered_unless_verbose(restore_filters, caplog):
    auth = logging.getLogger("ray._private.authentication.authentication_token_setup")
    ray_logs.configure(verbose=False)
    with caplog.at_level(logging.WARNING):
        auth.warning("Token authentication is enabled for this Ray cluster.")
        auth.warning("Token file is unreadable")  # a different warning still shows
    assert [r.getMessage() for r in caplog.records] == ["Token file is unreadable"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        ray_logs.configure(verbose=False)
        warnings.warn(
            "The maximum number of concurrent tasks for 'MapBatches(fn)' is 9",
            UserWarning,
            stacklevel=1,
        )
    assert caught == []
    caplog.clear()
    ray_logs.configure(verbose=True)
    with caplog.at_level(logging.WARNING):
        auth.warning("Token authentication is enabled for this Ray cluster.")
    assert len(caplog.records) == 1
