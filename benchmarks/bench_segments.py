"""Segments of one long file on object storage: read + decode, per-segment fetch vs shared.

One long 16 kHz PCM_16 WAV on the S3 emulator (moto, behind the counting loopback proxy
of tests/faultproxy.py) and a NeMo manifest cutting it into segments. Side by side in one
run, over the same plan:
- per segment: what `files.read_rows` did before io/segments.py: each entry fetched the
  whole file (`storage.read_object`) and its row carried the whole file to decode, which
  decoded its span;
- shared: `reading.read_unit` as it is now (one fetch per file and unit, each row the
  span alone), then the same `DecodeStage`.
Prints GETs, bytes carried in rows, the largest read batch, wall and CPU seconds, and the
ratios; appends them to benchmarks/RESULTS.md unless --no-record.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import soundfile as sf  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
RATE = 16000
MAX = 512 * 2**20


def long_wav(seconds: int) -> bytes:
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(seconds * RATE)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, x, RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def per_segment(plan, spec, batch: int):
    """Row tables as the reader made them before: a whole-file fetch and row per entry."""
    from pipeline.columns import ITEM_SCHEMA
    from pipeline.io.storage import filesystem, read_object
    from pipeline.io.units import audio_row

    fs, _ = filesystem(spec.uri, spec.storage)
    for unit in plan.units:
        rows = []
        for e in unit.files:
            data = read_object(fs, fs._strip_protocol(e.uri), spec.storage.timeout_s)
            rows.append(audio_row(e.uri, e.member, e.shard, data, span=(e.start, e.end)))
            if len(rows) == batch:
                yield pa.Table.from_pylist(rows, schema=ITEM_SCHEMA)
                rows = []
        if rows:
            yield pa.Table.from_pylist(rows, schema=ITEM_SCHEMA)


def shared(plan, spec, batch: int):
    from pipeline.io.reading import read_unit

    for unit in plan.units:
        yield from read_unit(unit, spec, MAX, batch)


def measure(tables, proxy, bucket: str) -> dict:
    from pipeline.spec import DecodeSpec
    from pipeline.stages.decode import DecodeStage

    stage = DecodeStage(DecodeSpec(max_duration_s=3600), RATE)
    proxy.faults.requests.clear()
    wall, cpu = time.perf_counter(), time.process_time()
    carried, largest, samples = 0, 0, []
    for t in tables:
        size = sum(len(b) for b in t.column("audio_bytes").to_pylist() if b)
        carried, largest = carried + size, max(largest, size)
        out = stage(t)
        assert out.column("error_code").null_count == out.num_rows, "a segment failed"
        samples += [np.asarray(a, np.float32) for a in out.column("audio").to_pylist()]
    gets = sum(bool(re.match(rf"GET /{bucket}/corpus/long.wav", r)) for r in proxy.faults.requests)
    return {
        "gets": gets,
        "carried": carried,
        "largest": largest,
        "wall": time.perf_counter() - wall,
        "cpu": time.process_time() - cpu,
        "samples": samples,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=int, default=5)
    p.add_argument("--segment-s", type=float, default=3.0)
    p.add_argument("--every-s", type=float, default=5.0)
    p.add_argument("--per-unit", type=int, default=32)
    p.add_argument("--batch", type=int, default=8, help="rows per read table (read_batch_items)")
    p.add_argument("--no-record", action="store_true", help="print only, do not append RESULTS.md")
    args = p.parse_args()

    import boto3
    from moto.server import ThreadedMotoServer

    from pipeline.io.listing import plan_input
    from pipeline.spec import InputSpec
    from pipeline.testing.machine import machine_line
    from tests.faultproxy import FaultProxy

    for key, value in (("ACCESS_KEY_ID", "bench"), ("SECRET_ACCESS_KEY", "bench")):
        os.environ.setdefault(f"AWS_{key}", value)  # moto accepts any keys
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint, bucket = f"http://{host}:{port}", "bench-segments"
    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket=bucket)
    wav = long_wav(args.minutes * 60)
    s3.put_object(Bucket=bucket, Key="corpus/long.wav", Body=wav)
    offsets = np.arange(0, args.minutes * 60 - args.segment_s, args.every_s)
    lines = [
        {"audio_filepath": "long.wav", "offset": float(o), "duration": args.segment_s}
        for o in offsets
    ]
    body = "".join(json.dumps(x) + "\n" for x in lines).encode()
    s3.put_object(Bucket=bucket, Key="corpus/manifest.jsonl", Body=body)
    try:
        with FaultProxy(endpoint) as proxy:
            spec = InputSpec(
                uri=f"s3://{bucket}/corpus",
                manifest=f"s3://{bucket}/corpus/manifest.jsonl",
                storage={"endpoint_url": proxy.url},
            )
            plan = plan_input(spec, items_per_unit=args.per_unit)
            before = measure(per_segment(plan, spec, args.batch), proxy, bucket)
            after = measure(shared(plan, spec, args.batch), proxy, bucket)
    finally:
        server.stop()
    same = all(
        np.array_equal(a, b) for a, b in zip(before["samples"], after["samples"], strict=True)
    )
    machine = machine_line()
    report(args, len(lines), len(plan.units), len(wav), before, after, same, machine)


def report(args, segments, units, size, before, after, same, machine) -> None:
    mib = 2**20
    rows = [
        ("GETs of the file", "gets", "{:,}".format),
        ("bytes carried in rows (MiB)", "carried", lambda v: f"{v / mib:,.1f}"),
        ("largest read table (MiB)", "largest", lambda v: f"{v / mib:,.1f}"),
        ("wall s (read + decode)", "wall", "{:.2f}".format),
        ("CPU s (this process)", "cpu", "{:.2f}".format),
    ]
    head = (
        f"## Segments of one long file on S3 (`bench_segments.py`) — "
        f"{datetime.now(UTC):%Y-%m-%d} — {machine}\n\n"
        f"{args.minutes} min 16 kHz PCM_16 WAV ({size / mib:.1f} MiB) on moto, {segments} NeMo "
        f"segments of {args.segment_s:g} s, {units} units of {args.per_unit}, read tables of "
        f"{args.batch} rows; decoded samples identical: {'yes' if same else 'NO'}.\n\n"
        "| | per segment (before) | shared (now) | now / before |\n|---|---:|---:|---:|\n"
    )
    table = "".join(
        f"| {name} | {fmt(before[k])} | {fmt(after[k])} | **{after[k] / before[k]:.3f}x** |\n"
        for name, k, fmt in rows
    )
    print(head + table)
    if not args.no_record:
        with RESULTS.open("a") as f:
            f.write("\n" + head + table)


if __name__ == "__main__":
    main()
