"""The `submit` and `render k8s` subcommands: argument parsing only, work elsewhere.

Ray is imported only when a command runs, so `--help` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pydantic is not imported for `--help`
    from pipeline.spec import JobSpec

LoadSpec = Callable[[argparse.Namespace], "JobSpec"]


def add_cluster_commands(sub, load: LoadSpec) -> None:
    """Register `submit` and `render` on the CLI's subparsers; `load` applies `--set`."""
    _add_submit(sub, load)
    _add_render(sub, load)


def _set_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec field before it is validated and sent (YAML value)",
    )
    p.add_argument(
        "--allow-local-paths",
        action="store_true",
        help="the spec's local paths exist on every cluster node (a shared volume)",
    )


def _add_submit(sub, load: LoadSpec) -> None:
    p = sub.add_parser("submit", help="submit a job spec to a Ray cluster through the Ray Jobs API")
    p.add_argument("spec", help="job spec YAML")
    p.add_argument(
        "--address",
        dest="dashboard",
        required=True,
        metavar="URL",
        help="the cluster's dashboard, e.g. http://head:8265",
    )
    _set_option(p)
    p.add_argument(
        "--wait",
        action="store_true",
        help="follow the job's logs and exit with its status (0: succeeded)",
    )
    p.add_argument(
        "--runtime-env",
        type=Path,
        metavar="FILE",
        help="YAML/JSON Ray runtime environment (env_vars, pip, ...) for the job",
    )
    p.add_argument(
        "--entrypoint-num-cpus",
        type=float,
        default=None,
        metavar="N",
        help="CPUs reserved for the job's driver (default: none)",
    )

    def run(args) -> int:
        from pipeline.cluster.submit import SubmitOptions, submit

        opts = SubmitOptions(
            address=args.dashboard,
            wait=args.wait,
            runtime_env=args.runtime_env,
            entrypoint_num_cpus=args.entrypoint_num_cpus,
            allow_local_paths=args.allow_local_paths,
        )
        return submit(load(args), opts)

    p.set_defaults(func=run)


def _add_render(sub, load: LoadSpec) -> None:
    render = sub.add_parser("render", help="write deployment manifests for a job spec")
    kinds = render.add_subparsers(required=True, metavar="TARGET")
    p = kinds.add_parser(
        "k8s", help="KubeRay manifests: RayJob; with --schedule RayCronJob and CronJob"
    )
    p.add_argument("spec", help="job spec YAML")
    p.add_argument(
        "--image", required=True, help="the audiobatch container image (infra/Dockerfile)"
    )
    p.add_argument("--schedule", metavar="CRON", help="run on a schedule, e.g. '0 2 * * *'")
    p.add_argument(
        "--gpu-workers",
        default="0:4",
        metavar="MIN:MAX",
        help="GPU worker pods the autoscaler keeps between (default 0:4)",
    )
    p.add_argument("--gpus-per-worker", type=int, default=1, metavar="N")
    p.add_argument("--namespace", default="default", metavar="NS")
    p.add_argument(
        "--secret",
        default="audiobatch-credentials",
        help="Secret whose keys become the pods' environment (storage credentials); "
        "'' for none (workload identity)",
    )
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="write here, not to stdout")
    _set_option(p)

    def run(args) -> int:
        from pipeline.cluster.k8s import K8sOptions, dump, parse_workers, render
        from pipeline.cluster.paths import portable_spec, refuse_local_paths

        spec = load(args)
        refuse_local_paths(spec, allow=args.allow_local_paths)
        opts = K8sOptions(
            image=args.image,
            namespace=args.namespace,
            schedule=args.schedule,
            gpu_workers=parse_workers(args.gpu_workers),
            gpus_per_worker=args.gpus_per_worker,
            secret=args.secret or None,
        )
        text = dump(render(spec, portable_spec(spec), opts))
        if args.output:
            args.output.write_text(text)
            print(f"wrote {args.output}", file=sys.stderr)
        else:
            sys.stdout.write(text)
        return 0

    p.set_defaults(func=run)
