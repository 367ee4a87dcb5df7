"""The `audiobatch` command. Heavy libraries are imported inside commands, so
`--help` and `validate` answer instantly and need no GPU stack."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from pipeline import history


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from pipeline.errors import AudiobatchError

    try:
        return args.func(args)
    except AudiobatchError as exc:  # exit codes: README "Exit codes"
        print(f"audiobatch: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(
            "audiobatch: interrupted; re-run the same spec to resume where it stopped",
            file=sys.stderr,
        )
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="audiobatch",
        description="Batch speech and audio models over object-storage shards with Ray Data.",
    )
    sub = p.add_subparsers(required=True, metavar="COMMAND")

    _add_run(sub)
    _add_validate(sub)
    _add_report(sub)
    _add_schema(sub)
    history.register(sub)

    demo = sub.add_parser(
        "demo-assets", help="build the demo corpus and tiny random-init models (once)"
    )
    demo.add_argument("folder", nargs="?", default=".demo")
    demo.set_defaults(func=_demo_assets)

    from pipeline.cluster.commands import add_cluster_commands

    add_cluster_commands(sub, load=_load)

    from pipeline.query.command import add_parsers as add_query_parsers

    add_query_parsers(sub)
    return p


def _add_run(sub) -> None:
    run = sub.add_parser("run", help="run a job spec (resumes: items already written are skipped)")
    run.add_argument("spec", help="job spec YAML")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec field (YAML value); numbers index lists, e.g. --set output.uri=/tmp/out --set tasks.0.batch_size=8",
    )
    run.add_argument(
        "--address", help="Ray cluster address (default: runtime.address, else a local Ray)"
    )
    run.add_argument(
        "--verbose", action="store_true", help="print every line of Ray's own output too"
    )
    run.add_argument(
        "--retry-errors",
        nargs="*",
        metavar="CODE",
        help="also retry earlier permanent errors (corrupt, empty, too_long, ...): all of "
        "them, or only these codes. Transient ones (read_failed, write_failed, out of "
        "memory) are always retried",
    )
    run.set_defaults(func=_run)


def _add_validate(sub) -> None:
    val = sub.add_parser("validate", help="validate a job spec and print what it would do")
    val.add_argument("spec")
    val.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    val.set_defaults(func=_validate)


def _add_report(sub) -> None:
    rep = sub.add_parser(
        "report", help="rebuild report.json / report.md / report.html from an output's tables"
    )
    rep.add_argument("output", help="output uri of a job")
    rep.add_argument(
        "--run", help="only the rows this run wrote, and what changed since the one before"
    )
    rep.add_argument(
        "--compare",
        metavar="OTHER_OUTPUT_OR_TASK",
        help="an ASR task of this output, or another output whose same-named task is compared item by item",
    )
    rep.add_argument("--endpoint-url", help="S3-compatible endpoint for the output")
    rep.set_defaults(func=_report)


def _add_schema(sub) -> None:
    sch = sub.add_parser(
        "schema", help="write (or check) the table and job-spec schemas in a folder"
    )
    sch.add_argument("folder", nargs="?", default="schemas")
    sch.add_argument(
        "--check", action="store_true", help="exit 1 if the files differ from the code"
    )
    sch.set_defaults(func=_schema)


def _load(args):
    from pipeline.errors import SpecError
    from pipeline.spec import load_spec

    overrides = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise SpecError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            overrides[key] = yaml.safe_load(value)
        except yaml.YAMLError:  # not a YAML scalar (e.g. @daily): the text itself
            overrides[key] = value
    if getattr(args, "address", None):
        overrides["runtime.address"] = args.address
    return load_spec(args.spec, overrides)


def _validate(args) -> int:
    from pipeline.plan import describe, stage_plans

    spec = _load(args)
    print(f"{args.spec}: valid job spec '{spec.name}' (hash {spec.spec_hash()})")
    print(f"  input:  {spec.input.uri} ({spec.input.format or 'format detected at run time'})")
    for t in spec.tasks:
        print(f"  task:   {t.task_name} ({t.kind}) model={t.model}")
    print(f"  output: {spec.output.uri}{_task_check(spec)}")
    print("  plan (every column a stage reads is made upstream):")
    for line in describe(stage_plans(spec)):
        print(f"    {line}")
    if spec.schedule:
        from pipeline.schedule import next_runs

        times = ", ".join(f"{t:%Y-%m-%d %H:%M %Z}" for t in next_runs(spec.schedule, spec.timezone))
        print(f"  schedule: {spec.schedule!r} ({spec.timezone}); next runs: {times}")
    return 0


def _task_check(spec) -> str:
    """Refuse a task changed under a name a local output already holds. Object storage is
    not contacted here (validate stays instant and offline); `run` checks it first."""
    from pipeline.io.storage import filesystem, is_remote
    from pipeline.io.task_identity import check_tasks, recorded_revisions
    from pipeline.models.revision import resolve_revisions

    if is_remote(spec.output.uri):
        return " (object storage: task identities are checked when the run starts)"
    fs, root = filesystem(spec.output.uri, spec.output.storage)
    # Recorded tasks' local folders are a (memoised) hash here; hub ids need the hub and
    # object storage the network: `run` checks those.
    known = recorded_revisions(fs, root)
    revisions = resolve_revisions(spec, hub=False, remote=False, only=known) if known else {}
    check_tasks(fs, root, spec, revisions)
    return ""


def _run(args) -> int:
    spec = _load(args)
    from pipeline.io.storage import arrow_filesystem
    from pipeline.runner import run_job

    result = run_job(spec, verbose=args.verbose, retry=_retry_policy(args.retry_errors))
    print(_summary(result, result.report, spec.output.uri))
    fs, root = arrow_filesystem(spec.output.uri, spec.output.storage)
    return _error_share_exit(result, spec, fs, root)


def _error_share_exit(result, spec, fs, root) -> int:
    """4 when more than runtime.max_error_share of this run's items failed, else 0."""
    from pipeline.reports import failures

    c, share = result.counters, spec.runtime.max_error_share
    if not failures.too_many_errors(c.items, c.failed, share):
        return 0
    top = failures.top_errors(fs, root, result.run_id)
    print(failures.failure_report(c.items, c.failed, share, top), file=sys.stderr)
    return failures.EXIT_TOO_MANY_ERRORS


def _retry_policy(codes: list[str] | None):
    from pipeline.errors import ErrorCode, SpecError
    from pipeline.io.completion import RetryPolicy

    if codes is None:
        return RetryPolicy()
    unknown = sorted(set(codes) - {c.value for c in ErrorCode})
    if unknown:
        raise SpecError(
            f"--retry-errors: unknown error code(s) {', '.join(unknown)}; "
            f"codes: {', '.join(c.value for c in ErrorCode)}"
        )
    return RetryPolicy(codes=frozenset(codes), all=not codes)


def _summary(result, report: dict, uri: str) -> str:
    """What `run` prints: the run's counts, a line per task of each result table
    (`reports/results.py`), the errors, and where the tables and the report are."""
    from pipeline.reports.results import RESULT_REPORTS

    c = result.counters
    rtf = c.audio_s / result.wall_s if result.wall_s else 0.0
    lines = [
        f"run {result.run_id} {result.status}: {c.items:,} items this run ({c.failed:,} errors), "
        f"{c.audio_s / 3600:.3f} h audio in {result.wall_s:.1f} s wall = {rtf:.1f}x realtime",
    ]
    for entry in RESULT_REPORTS:
        lines += [entry.summary(task, s) for task, s in report.get(entry.key, {}).items()]
    lines.append(
        f"  errors in table: {report['errors']['total']:,} {dict(report['errors']['by_code'])}"
    )
    written = [entry.table for entry in RESULT_REPORTS if report.get(entry.key)]
    lines.append(
        f"  tables: {uri.rstrip('/')}/{{{','.join([*written, 'errors', 'runs'])}}}/   "
        f"report: {uri.rstrip('/')}/report.html"
    )
    return "\n".join(lines)


def _report(args) -> int:
    from pipeline.io.storage import arrow_filesystem
    from pipeline.reports.report import ReportRequest, build_report, write_report
    from pipeline.spec import StorageOptions

    storage = StorageOptions(endpoint_url=args.endpoint_url)
    fs, root = arrow_filesystem(args.output, storage)
    request = ReportRequest(args.output, storage, run=args.run, compare=args.compare)
    paths = write_report(fs, root, build_report(request))
    print("wrote " + ", ".join(paths))
    return 0


def _schema(args) -> int:
    from pipeline.schemas import render_all

    folder = Path(args.folder)
    stale = []
    for name, content in render_all().items():
        path = folder / name
        if args.check:
            if not path.exists() or path.read_text() != content:
                stale.append(str(path))
        else:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
    if stale:
        print("schemas out of date (run `audiobatch schema`): " + ", ".join(stale), file=sys.stderr)
        return 1
    print(f"schemas {'match' if args.check else 'written to'} {folder}")
    return 0


def _demo_assets(args) -> int:
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from pipeline.demo_assets import build_demo_assets

    print(build_demo_assets(args.folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
