"""The Ray half of a run: the Ray Data pipeline over a plan, written through the sink.

read (AudioShardDatasource) -> decode (CPU tasks) -> model stages (actor pools)
-> score (CPU tasks) -> TablesDatasink, with Ray's id-column checkpointing keyed
on `item_id` so a re-run (after a crash or after success) processes each item once.
Imported by `run_job` only when a run has work units: a night with nothing to do
never imports Ray.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import ray
import ray.data
from ray.data.checkpoint import CheckpointConfig

from pipeline import columns as C
from pipeline.fit import fit_plan
from pipeline.io.completion import CHECKPOINT_DIR, Completion
from pipeline.io.storage import join
from pipeline.plan import Plan, StagePlan, last_audio_reader
from pipeline.runner import ray_logs
from pipeline.runner.checkpoint import CleanupOnlyCheckpointManager
from pipeline.runner.datasink import TablesDatasink
from pipeline.runner.datasource import AudioShardDatasource
from pipeline.runner.progress_actor import ProgressActor, ProgressPrinter
from pipeline.spec import JobSpec, RuntimeSpec


def execute(
    spec: JobSpec,
    plan: Plan,
    inputs,
    done: Completion,
    run_id,
    out_fs,
    out_root,
    out,
    record,
    verbose: bool,
):
    """Start (or join) Ray, fit the plan to the cluster, run it; (status, counters, message)."""
    _init_ray(spec.runtime, verbose)
    fit = fit_plan(plan, ray.cluster_resources())
    if fit.note:
        out(fit.note)
    return _execute(spec, fit.plan, inputs, done, run_id, out_fs, out_root, out, record)


def _execute(
    spec: JobSpec, plan: Plan, inputs, done: Completion, run_id, out_fs, out_root, out, record
):
    """Build the Ray Data pipeline, write it through the checkpointed sink, report progress."""
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.checkpoint_config = CheckpointConfig(
        id_column=C.ITEM_ID,
        checkpoint_path=join(spec.output.uri, CHECKPOINT_DIR),
        delete_checkpoint_on_success=False,  # the next run must still skip what is done
        override_filesystem=out_fs,
        checkpoint_manager_cls=CleanupOnlyCheckpointManager,  # our reader skips done ids
    )
    progress = ProgressActor.options(scheduling_strategy=_on_driver_node()).remote()
    ds = _dataset(spec, plan, inputs, done, progress)
    sink_root = spec.output.uri if "://" in spec.output.uri else out_root
    sink = TablesDatasink(
        sink_root,
        out_fs,
        tasks=plan.tasks,
        run_id=run_id,
        input_hash=spec.input_hash(),
        progress=progress,
        timeout_s=spec.output.storage.timeout_s if "://" in spec.output.uri else None,
    )
    # A texts row's input_bytes are its text's, not its table's share: no byte fraction.
    total_bytes = None if inputs.format == "texts" else inputs.total_bytes
    totals = {"total_items": inputs.total_items, "total_bytes": total_bytes}
    totals["gate"] = next((s.name for s in reversed(plan.stages) if s.resources.actor), None)
    interval = spec.runtime.progress_interval_s
    t0 = time.monotonic()
    printer = ProgressPrinter(
        progress,
        interval_s=interval,
        out=out,
        on_tick=lambda c: record.tick(c, time.monotonic() - t0),
        **totals,
    ).start()
    status, message = "failed", None
    try:
        ds.write_datasink(sink)
        status = "succeeded"
    except Exception as exc:  # recorded in the runs table, re-raised by run_job
        message = f"{type(exc).__name__}: {exc}"
    finally:
        counters = printer.stop()
        ray.kill(progress)
        ctx.checkpoint_config = None
    return status, counters, message


def _on_driver_node():
    """The progress counters live on the driver's node: left to Ray, a 0-CPU actor may land
    on a worker node, and losing that node would lose every count of the run."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)


def _dataset(spec: JobSpec, plan: Plan, inputs, done: Completion, progress):
    resources = ray.cluster_resources()
    pool_sizes = {s.resources.max_actors for s in plan.stages if s.resources.actor}
    max_bytes = int(spec.decode.max_file_mb * 2**20)
    source = AudioShardDatasource(
        inputs, spec.input, max_bytes, spec.runtime.read_batch_items, ray.put(done)
    )
    ds = ray.data.read_datasource(source)
    last_user = last_audio_reader(plan.stages)
    for stage in plan.stages:
        ds = _apply(ds, stage, progress, resources, pool_sizes)
        if stage is last_user:  # audio is not needed past the models
            ds = ds.drop_columns([C.AUDIO])
    return ds


# Workers inherit these: no download progress bars or info chatter from transformers.
_WORKER_ENV = {
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def _init_ray(runtime: RuntimeSpec, verbose: bool) -> None:
    ray_logs.configure(verbose)
    if not ray.is_initialized():
        _start_ray(runtime)
    if not verbose:
        ray_logs.filter_worker_lines()
        ray_logs.spend_restart_notice()


def _start_ray(runtime: RuntimeSpec) -> None:
    ray.init(
        address=runtime.address,
        num_cpus=runtime.num_cpus if runtime.address is None else None,
        include_dashboard=False,
        logging_level="WARNING",
        runtime_env={"env_vars": _WORKER_ENV},
    )


def _actor_class(stage: StagePlan, progress) -> type:
    """A class for an actor pool: builds the stage once per actor, times each batch.

    The stage plan rides in the class, not in `fn_constructor_args`: Ray keeps
    constructor arguments in the object store, and warns on every actor start that a
    restarted actor may not find them."""

    class _ActorStage:
        def __init__(self):
            self._stage = stage.factory().load()

        def __call__(self, batch: pa.Table) -> pa.Table:
            return _timed(self._stage, stage.name, progress, batch)

    _ActorStage.__name__ = _ActorStage.__qualname__ = f"Stage_{stage.name}"
    return _ActorStage


_TASK_STAGES: dict[str, object] = {}


def _task_fn(stage: StagePlan, progress) -> Callable[[pa.Table], Iterator[pa.Table]]:
    def fn(batch: pa.Table) -> Iterator[pa.Table]:
        # Worker processes are reused: build each stage once per process, not per batch.
        instance = _TASK_STAGES.get(stage.name) or _TASK_STAGES.setdefault(
            stage.name, stage.factory().load()
        )
        # A stage may hand its output on in several blocks (decode, by decoded bytes).
        t, cpu = time.perf_counter(), time.thread_time()
        for out in instance.calls(batch):
            _report(progress, stage.name, out, time.perf_counter() - t, time.thread_time() - cpu)
            yield out
            t, cpu = time.perf_counter(), time.thread_time()

    return fn


def _timed(stage, name: str, progress, batch: pa.Table) -> pa.Table:
    t, cpu = time.perf_counter(), time.thread_time()
    out = stage(batch)
    _report(progress, name, out, time.perf_counter() - t, time.thread_time() - cpu)
    return out


def _report(progress, name: str, out: pa.Table, busy_s: float, cpu_s: float) -> None:
    """Count a stage's output; `cpu_s` is the CPU time of the calling thread (the stage's
    own work, without Ray's threads in the same worker)."""
    sizes = out.column(C.INPUT_BYTES) if C.INPUT_BYTES in out.column_names else None
    size = int(pc.sum(sizes).as_py() or 0) if sizes is not None else 0
    progress.stage.remote(name, out.num_rows, C.audio_seconds(out), busy_s, size, cpu_s)


def _apply(ds, stage: StagePlan, progress, resources: dict, pool_sizes: set[int]):
    r = stage.resources
    common = {"batch_format": "pyarrow", "batch_size": stage.batch_size, "zero_copy_batch": True}
    if not r.actor:
        return ds.map_batches(
            _task_fn(stage, progress),
            num_cpus=r.num_cpus,
            compute=_unfused_tasks(resources.get("CPU", 1) / r.num_cpus, pool_sizes),
            **common,
        )
    gpus = r.num_gpus if resources.get("GPU", 0) > 0 else 0
    return ds.map_batches(
        _actor_class(stage, progress),
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=r.max_actors),
        num_cpus=r.num_cpus,
        num_gpus=gpus,
        **common,
    )


def _unfused_tasks(slots: float, pool_sizes: set[int]):
    """A task pool that Ray does not fuse into the next actor pool: fused, decode would
    run serially inside the model actor instead of on free CPUs.

    Ray fuses a task stage into an actor pool only when the task pool's size is unset or
    equals the pool's `max_size` (Ray 2.60 operator_fusion `_fuse_compute_strategy`), so
    the size is set, to a cap far above what the cluster's CPUs (`slots` tasks at once)
    can run, with room for nodes an autoscaler adds, and never to an actor pool's size."""
    size = max(1024, 16 * int(slots))
    while size in pool_sizes:
        size += 1
    return ray.data.TaskPoolStrategy(size=size)
