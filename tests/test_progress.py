from pipeline.progress import Counters, format_line


def test_progress_line_with_known_total_shows_share_rate_and_eta():
    c = Counters()
    c.written(items=250, failed=3, audio_s=3600.0, bytes=10)
    line = format_line(c, 50.0, total_items=1000, total_bytes=None)
    assert "250/1,000 items (25.0%)" in line
    assert "1.00 h audio" in line
    assert "5.0 items/s" in line
    assert "72x realtime" in line
    assert "3 errors" in line
    assert "ETA 0:02:30" in line


def test_progress_falls_back_to_bytes_and_omits_eta_when_unknown():
    c = Counters()
    c.written(items=10, failed=0, audio_s=10.0, bytes=50)
    assert "(50.0%)" in format_line(c, 10.0, total_items=None, total_bytes=100)
    assert "ETA" not in format_line(c, 10.0, total_items=None, total_bytes=None)


def test_stage_counters_accumulate():
    c = Counters()
    c.stage("ctc", 4, 8.0, 0.5)
    c.stage("ctc", 2, 2.0, 0.5)
    assert (c.stages["ctc"].items, c.stages["ctc"].audio_s, c.stages["ctc"].busy_s) == (
        6,
        10.0,
        1.0,
    )
    assert format_line(c, 1.0, total_items=None, total_bytes=None).endswith("stages: ctc 6")
