"""infra/Dockerfile cannot be built here: check what can be checked without a daemon.
Its pins agree with pyproject.toml, every file it copies exists, it runs as a non-root user
on a CUDA base, and the demo it advertises is runnable from what it copies."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "infra" / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "infra" / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"constraints.txt pins exact versions: {line}"
            assert req.name.lower() not in pins, f"{req.name} pinned twice"
            pins[req.name.lower()] = spec.version
    return pins


def _dependencies() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(d) for d in project["dependencies"]]


def test_every_runtime_dependency_is_pinned_within_its_pyproject_range():
    pins, deps = _pins(), _dependencies()
    assert sorted(pins) == sorted(d.name.lower() for d in deps), "pin exactly the runtime deps"
    for dep in deps:
        version = pins[dep.name.lower()]
        assert dep.specifier.contains(version, prereleases=True), f"{dep.name}=={version} vs {dep}"


def test_the_torch_pin_is_the_one_make_installs():
    make_torch = re.search(r"^TORCH \?= torch==(\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert make_torch and _pins()["torch"] == make_torch.group(1)


def test_every_copied_file_exists_and_installs_use_the_pins():
    steps = _instructions()
    copies = [shlex.split(args) for word, args in steps if word == "COPY"]
    assert copies
    for parts in copies:
        sources = [p for p in parts[:-1] if not p.startswith("--")]
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
    copied = {s for parts in copies for s in parts[:-1]}
    assert {"pyproject.toml", "pipeline", "infra/constraints.txt"} <= copied
    installs = [args for word, args in steps if word == "RUN" and "pip install" in args]
    assert installs
    for run in installs:
        for cmd in run.split("&&"):
            if "pip install" in cmd:
                assert "-c /opt/constraints.txt" in cmd, f"unpinned install: {cmd.strip()}"


def test_cuda_base_and_a_non_root_user():
    steps = _instructions()
    args = {
        m.group(1): m.group(2)
        for w, a in steps
        if w == "ARG"
        for m in [re.match(r"(\w+)=(\S+)", a)]
        if m
    }
    (base,) = [a for w, a in steps if w == "FROM"]
    base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
    assert base.startswith("nvidia/cuda:"), base
    users = [a for w, a in steps if w == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must end as a non-root user"
    assert any("useradd" in a and f"--uid {users[-1]}" in a for w, a in steps if w == "RUN")


def test_the_advertised_demo_uses_only_copied_files():
    demo = re.search(r"audiobatch run (\S+)'", DOCKERFILE.read_text())
    assert demo, "the Dockerfile says how to run the demo"
    spec = demo.group(1)
    assert (ROOT / spec).is_file()
    copied = [shlex.split(a)[0] for w, a in _instructions() if w == "COPY"]
    assert spec.split("/")[0] in copied
