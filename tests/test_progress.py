from pipeline.progress import Counters, Rate, RateMeter, StageCounter, format_line


def test_items_count_as_done_when_they_clear_the_last_model_stage():
    c = Counters()
    c.stage("decode", 600, 7200.0, 1.0, 6000)
    c.stage("ctc", 250, 3600.0, 1.0, 2500)
    c.written(items=100, failed=3, audio_s=1000.0, bytes=1000)
    rate = Rate(items_s=5.0, audio_s=72.0, bytes_s=50.0)
    line = format_line(c, 50.0, total_items=1000, total_bytes=None, gate="ctc", rate=rate)
    assert "250/1,000 items (25.0%)" in line
    assert "1.00 h audio" in line
    assert "5.0 items/s" in line and "72x realtime" in line
    assert "ETA 0:02:30" in line
    assert "100 written, 3 errors" in line
    assert line.endswith("stages: decode 600 ctc 250")


def test_without_a_rate_there_is_no_rate_nor_eta():
    c = Counters()
    c.stage("ctc", 10, 10.0, 1.0, 50)
    line = format_line(c, 10.0, total_items=None, total_bytes=100, gate="ctc")
    assert "10 items (50.0%)" in line
    assert "items/s" not in line and "ETA" not in line


def test_eta_from_bytes_when_the_item_count_is_unknown():
    c = Counters()
    c.stage("ctc", 10, 10.0, 1.0, 50)
    rate = Rate(items_s=1.0, audio_s=1.0, bytes_s=5.0)
    assert "ETA 0:00:10" in format_line(
        c, 10.0, total_items=None, total_bytes=100, gate="ctc", rate=rate
    )


def test_without_a_gate_written_items_count():
    c = Counters()
    c.written(items=7, failed=0, audio_s=1.0, bytes=1)
    assert format_line(c, 1.0, total_items=10, total_bytes=None).startswith("[0:00:01] 7/10 items")


def test_rate_meter_starts_at_the_first_done_item_and_slides_over_its_window():
    meter = RateMeter(window_s=60.0)
    assert meter.add(0.0, StageCounter()) is None  # start-up: nothing done yet
    assert meter.add(30.0, StageCounter(items=10, audio_s=100.0)) is None  # one point
    rate = meter.add(40.0, StageCounter(items=30, audio_s=300.0, bytes=100))
    assert (rate.items_s, rate.audio_s, rate.bytes_s) == (2.0, 20.0, 10.0)  # not 30/40 s
    meter.add(100.0, StageCounter(items=90, audio_s=900.0))
    # 60 s later the window has moved past the first point: the rate is the recent one
    rate = meter.add(160.0, StageCounter(items=390, audio_s=3900.0))
    assert rate.items_s == (390 - 90) / 60


def test_stage_counters_accumulate():
    c = Counters()
    c.stage("ctc", 4, 8.0, 0.5, 10)
    c.stage("ctc", 2, 2.0, 0.5, 5)
    s = c.stages["ctc"]
    assert (s.items, s.audio_s, s.busy_s, s.bytes) == (6, 10.0, 1.0, 15)
