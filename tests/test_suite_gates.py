"""The test command's own contract: `python -m pytest` leaves the system alone (the SLURM tests run
only when asked), and `.ci/run` asks for them and fails whenever pytest does, "no tests collected"
(exit 5) included."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, SLURM_TESTS_VARIABLE, slurm_tests_requested


@pytest.mark.parametrize("value, asked", [("1", True), ("true", True), ("", False), ("0", False), ("no", False)])
def test_slurm_tests_run_only_when_asked(value, asked):
    assert slurm_tests_requested({SLURM_TESTS_VARIABLE: value}) is asked
    assert slurm_tests_requested({}) is False


@pytest.mark.slow
def test_slurm_tests_are_skipped_by_default_with_the_way_to_ask(pytester_like_run):
    result = pytester_like_run("tests/test_slurm.py", env_extra={SLURM_TESTS_VARIABLE: ""})
    assert result.returncode == 0, result.stdout
    assert "skipped" in result.stdout and "passed" not in result.stdout and "failed" not in result.stdout
    assert f"{SLURM_TESTS_VARIABLE}=1" in result.stdout


@pytest.fixture
def pytester_like_run():
    def run(*args, env_extra):
        env = dict(os.environ, **env_extra)
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *args],
                              cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    return run


@pytest.mark.parametrize("pytest_status", [0, 1, 5])
def test_ci_run_asks_for_slurm_and_keeps_pytest_failures(tmp_path: Path, pytest_status):
    # A stand-in `python` records what .ci/run asks of it; pip "installs" at once.
    record = tmp_path / "record"
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    fake.write_text(f"""#!/bin/sh
if [ "$2" = pip ]; then exit 0; fi
echo "$@ {SLURM_TESTS_VARIABLE}=${SLURM_TESTS_VARIABLE}" >> {record}
exit {pytest_status}
""")
    fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    env.pop(SLURM_TESTS_VARIABLE, None)
    done = subprocess.run([str(REPO_ROOT / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == pytest_status
    assert record.read_text() == f"-m pytest {SLURM_TESTS_VARIABLE}=1\n"
    assert ("collected no tests" in done.stderr) is (pytest_status == 5)
