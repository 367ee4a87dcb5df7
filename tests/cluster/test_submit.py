from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from pipeline.cli import main
from pipeline.cluster.submit import dashboard_url, submission_id
from pipeline.errors import SpecError

SPEC = "name: x\ninput: {uri: 's3://b/c'}\ntasks: [{kind: ctc, model: 's3://b/m'}]\noutput: {uri: 's3://b/o'}\n"


def test_submission_id_names_job_time_and_spec():
    when = datetime(2026, 12, 1, 23, 5, 9, tzinfo=UTC)
    assert submission_id("Nightly_Labels", "0123456789abcdef", when) == (
        "nightly-labels-20261201-230509-01234567"
    )
    assert re.fullmatch(r"x-\d{8}-\d{6}-abcdef12", submission_id("x", "abcdef1234"))


def test_dashboard_address_forms():
    assert dashboard_url("head:8265") == "http://head:8265"
    assert dashboard_url("https://ray.example.com/") == "https://ray.example.com"
    for bad in ("ray://head:10001", "http://"):
        with pytest.raises(SpecError, match="dashboard"):
            dashboard_url(bad)


def test_a_malformed_runtime_env_is_refused(tmp_path, capsys):
    spec = tmp_path / "job.yaml"
    spec.write_text(SPEC)
    env = tmp_path / "env.yaml"
    env.write_text("env_vars: [A, b]\n")
    # Refused before any connection is tried (nothing listens on port 1).
    code = main(["submit", str(spec), "--address", "http://127.0.0.1:1", "--runtime-env", str(env)])
    assert code == 2 and "env_vars must be a mapping" in capsys.readouterr().err
    env.write_text("- not a mapping\n")
    assert main(["submit", str(spec), "--address", "127.0.0.1:1", "--runtime-env", str(env)]) == 2
    assert "must be a mapping" in capsys.readouterr().err
