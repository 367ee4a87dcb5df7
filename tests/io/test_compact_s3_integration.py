"""`audiobatch compact` on object storage (the moto S3 emulator): no rename, one manifest."""

from __future__ import annotations

import pytest

from pipeline.cli import main
from pipeline.io.compact import CompactOptions, compact_output
from pipeline.io.compacted import published
from pipeline.io.storage import arrow_filesystem, filesystem
from pipeline.io.tables import visible_files
from pipeline.query import connect
from pipeline.spec import StorageOptions
from tests.io.compaction import COUNTS, Reader, many_runs

pytestmark = pytest.mark.integration
QUIET = dict(out=lambda line: None)


@pytest.fixture
def s3_output(s3_bucket):
    endpoint, bucket = s3_bucket
    storage = StorageOptions(endpoint_url=endpoint)
    uri = f"s3://{bucket}/out"
    fs, root = arrow_filesystem(uri, storage)
    return uri, storage, fs, root


def test_a_reader_on_object_storage_never_sees_a_duplicate_or_a_missing_row(s3_output):
    uri, storage, fs, root = s3_output
    expected = many_runs(fs, root, 40)
    reader = Reader(uri, expected, storage, errors=40)
    reader.start()
    reader.settle()
    compact_output(uri, storage, CompactOptions(grace_s=3600), **QUIET)
    reader.settle()
    reader.retire_keep()  # the grace period is over for it below
    compact_output(uri, storage, CompactOptions(grace_s=0), **QUIET)
    reader.settle()
    reader.finish()
    assert reader.failures == [], reader.failures[:2]
    assert reader.wrong == []
    assert reader.queries >= 6 and reader.kept_queries > 0
    assert [f.rsplit("/", 1)[-1][:11] for f in visible_files(fs, root, "transcripts")] == [
        "-compacted-"
    ] * 2
    ffs, path = filesystem(uri, storage)
    assert len(ffs.ls(f"{path}/transcripts/task=ctc")) == 1  # replaced files deleted
    assert published(ffs, path, "transcripts").generation == 1
    assert connect(uri, storage).sql(COUNTS).fetchall() == expected


def test_compact_command_on_object_storage_refuses_a_held_lease(s3_output, capsys):
    from pipeline.io.lease import acquire

    uri, storage, fs, root = s3_output
    many_runs(fs, root, 3)
    ffs, path = filesystem(uri, storage)
    lease = acquire(ffs, path, "20261130T000000Z-s3run1", 60)
    try:
        assert main(["compact", uri, "--endpoint-url", storage.endpoint_url]) == 3
    finally:
        lease.release()
    assert "in use by run 20261130T000000Z-s3run1" in capsys.readouterr().err
    assert main(["compact", uri, "--endpoint-url", storage.endpoint_url]) == 0
    assert "transcripts: 6 of 6 files into 2" in capsys.readouterr().out
