"""The machine line benchmarks head their RESULTS.md sections with."""

import os
import re
import stat

from pipeline.testing.machine import gpu_name, machine_line


def test_the_line_names_cores_memory_gpu_and_load(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi here
    line = machine_line()
    found = re.fullmatch(r"\S+: (\d+) cores, (\d+) GiB, no GPU, load average \d+\.\d", line)
    assert found, line
    assert int(found[1]) == os.cpu_count() and int(found[2]) >= 1


def _fake_smi(folder, script: str) -> None:
    smi = folder / "nvidia-smi"
    smi.write_text("#!/bin/sh\n" + script)
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)


def test_the_gpu_is_named_by_nvidia_smi_and_its_failure_said(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    _fake_smi(tmp_path, "echo 'NVIDIA H200'\necho 'NVIDIA H200'\n")
    assert gpu_name() == "2 x NVIDIA H200"
    _fake_smi(tmp_path, "exit 9\n")
    assert gpu_name() == "GPU (nvidia-smi failed)"
