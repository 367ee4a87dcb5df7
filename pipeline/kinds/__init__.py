"""The model kinds, one module each in this package, found by looking (no list to edit).

A kind's module (`pipeline/kinds/<kind>.py`, named as its `kind:` in a spec) holds its
task spec, a `base.TaskBase` with `kind: Literal["<kind>"]` and its settings, and `KIND`,
its `base.StageKind` entry: where its stage class lives, the table it writes, its fields
and role. It stays light (pydantic only), so the spec, the plan and `audiobatch validate`
read every kind without importing torch.

Adding a model kind that writes an existing table is two files: this module, and its
stage (`pipeline/stages/<kind>.py`, a `stages.model.ModelStage` whose `load_model`
returns its `models.base.ModelAdapter`; a larger loader may live in `pipeline/models/`).
The spec's union of task kinds (`spec.TaskSpec`, hence `schemas/job_spec.schema.json`),
the column contract (`contract.MODEL_STAGES`), the plan and the runner all read
`MODEL_STAGES` here.
"""

from __future__ import annotations

import importlib
import pkgutil

from pipeline.kinds.base import StageKind


def _find() -> dict[str, StageKind]:
    """Every kind module of this package, by name, in name order."""
    found = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name == "base" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        kind = getattr(module, "KIND", None)
        if not isinstance(kind, StageKind):
            raise TypeError(f"{module.__name__} defines no KIND = StageKind(...)")
        declared = kind.spec.model_fields["kind"].default
        if declared != info.name:
            raise TypeError(
                f"{module.__name__}: its spec's kind is {declared!r}; a kind's module is "
                "named as its kind"
            )
        found[info.name] = kind
    return found


MODEL_STAGES: dict[str, StageKind] = _find()
