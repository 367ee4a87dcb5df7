"""Finding the model kinds: this package's modules, then the plugins' entry points (see
the package's docstring, `pipeline/kinds/__init__.py`)."""

from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points

from pipeline import kinds
from pipeline.kinds.base import StageKind

PLUGIN_GROUP = "audiobatch.kinds"


def _find() -> dict[str, StageKind]:
    """Every kind: this package's modules in name order, then the installed plugins'."""
    found = {}
    for info in sorted(pkgutil.iter_modules(kinds.__path__), key=lambda m: m.name):
        if info.name not in ("base", "registry") and not info.name.startswith("_"):
            found[info.name] = _kind(
                importlib.import_module(f"{kinds.__name__}.{info.name}"), info.name
            )
    for entry in sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        if entry.name in found:
            raise TypeError(
                f"the {PLUGIN_GROUP} entry point {entry.name!r} ({entry.value}) names a kind "
                "that exists already; give the plugin's kind another name"
            )
        found[entry.name] = _kind(importlib.import_module(entry.value), entry.name)
    return found


def _kind(module, name: str) -> StageKind:
    """The module's `KIND`, checked: a StageKind whose spec's kind is `name`."""
    kind = getattr(module, "KIND", None)
    if not isinstance(kind, StageKind):
        raise TypeError(f"{module.__name__} defines no KIND = StageKind(...)")
    declared = kind.spec.model_fields["kind"].default
    if declared != name:
        raise TypeError(
            f"{module.__name__}: its spec's kind is {declared!r}; a kind's module (or entry "
            f"point) is named as its kind ({name!r})"
        )
    return kind


MODEL_STAGES: dict[str, StageKind] = _find()
