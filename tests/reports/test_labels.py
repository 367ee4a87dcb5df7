"""The label distribution helper on a hand-made classifications table."""

from __future__ import annotations

import pyarrow as pa
import pytest

from pipeline.reports.labels import label_distribution
from pipeline.schemas import CLASSIFICATIONS, conform


def row(item: str, duration: float, labels=None, segments=None) -> dict:
    r = {f.name: None for f in CLASSIFICATIONS}
    r.update(
        item_id=item,
        source_uri=f"/c/{item}.wav",
        member="",
        shard="s1",
        duration_s=duration,
        model="m",
        labels=labels,
        segments=segments,
        run_id="r1",
    )
    return r


def ls(*pairs):
    return [{"label": label, "score": score} for label, score in pairs]


def seg(start, end, label, score):
    return {"start": start, "end": end, "label": label, "score": score}


def table(rows: list[dict], task: str | None = None) -> pa.Table:
    t = conform(pa.Table.from_pylist([r | {"task": task or "_"} for r in rows]), "classifications")
    return t if task is not None else t.drop_columns(["task"])


def test_clip_labels_by_item_count_first_place_and_mean_score():
    t = table(
        [
            row("a", 10.0, ls(("dog", 0.9), ("music", 0.5))),
            row("b", 10.0, ls(("music", 0.8), ("dog", 0.3))),
            row("c", 5.0, ls(("music", 0.6))),
            row("d", 5.0, []),  # nothing above the threshold
        ],
        task="tags",
    )
    got = label_distribution(t)["tags"]
    assert got["items"] == 4 and got["audio_s"] == 30.0
    assert got["labels"] == [
        {"label": "music", "items": 3, "first": 2, "mean_score": pytest.approx(1.9 / 3)},
        {"label": "dog", "items": 2, "first": 1, "mean_score": pytest.approx(0.6)},
    ]
    assert "segments" not in got


def test_frame_segments_by_total_seconds_and_length_weighted_score():
    t = table(
        [
            row("a", 10.0, segments=[seg(0.0, 2.0, "speech", 0.9), seg(2.0, 3.0, "music", 0.6)]),
            row("b", 10.0, segments=[seg(1.0, 4.0, "speech", 0.7)]),
            row("c", 4.0, segments=[]),
        ]
    )
    got = label_distribution(t)[""]
    assert got["segments"] == [
        {
            "label": "speech",
            "segments": 2,
            "seconds": pytest.approx(5.0),
            "share_of_audio": pytest.approx(5.0 / 24.0),
            "mean_score": pytest.approx((2 * 0.9 + 3 * 0.7) / 5),
        },
        {
            "label": "music",
            "segments": 1,
            "seconds": pytest.approx(1.0),
            "share_of_audio": pytest.approx(1.0 / 24.0),
            "mean_score": pytest.approx(0.6),
        },
    ]
    assert "labels" not in got


def test_tasks_are_summarised_apart_and_top_limits_the_lists():
    clip = table([row(f"i{k}", 1.0, ls((f"l{k}", 0.5))) for k in range(5)], task="clip")
    frames = table([row("f", 3.0, segments=[seg(0, 1, "x", 1.0)])], task="frames")
    got = label_distribution(pa.concat_tables([clip, frames]), top=3)
    assert sorted(got) == ["clip", "frames"]
    assert len(got["clip"]["labels"]) == 3 and got["clip"]["items"] == 5
    assert got["frames"]["segments"][0]["label"] == "x"
    empty = label_distribution(table([row("e", 1.0, [])]))[""]
    assert empty["labels"] == []
