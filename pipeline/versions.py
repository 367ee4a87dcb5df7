"""Versions of the packages that decide a run's results, recorded in the runs table."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

_PACKAGES = (
    "audiobatch",
    "ray",
    "torch",
    "transformers",
    "pyarrow",
    "soundfile",
    "soxr",
    "av",
    "jiwer",
    "numpy",
)


def versions() -> dict[str, str]:
    found = {}
    for name in _PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found
