"""Fixtures shared by the test modules.

`workflow_copy` gives a private copy of the workflow (Snakefile, config.yaml, workflow/ and the
rnnlm package) in tmp_path, and `run_snakemake` runs Snakemake there as a subprocess, so
pipeline tests never touch the repository's results/ or .snakemake/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# The SLURM tests install and start daemons (tests/cluster/start-slurm.sh), so `python -m pytest`
# leaves them out unless this variable asks for them; .ci/run sets it.
SLURM_TESTS_VARIABLE = "RNNLM_SLURM_TESTS"


def slurm_tests_requested(environ) -> bool:
    return environ.get(SLURM_TESTS_VARIABLE, "").strip().lower() in ("1", "true", "yes")


def pytest_collection_modifyitems(config, items):
    if slurm_tests_requested(os.environ):
        return
    skip = pytest.mark.skip(reason=f"changes the system (installs and starts SLURM daemons): "
                                   f"run with {SLURM_TESTS_VARIABLE}=1 python -m pytest -m slurm")
    for item in items:
        if "slurm" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def workflow_copy(tmp_path: Path) -> Path:
    """A directory holding a copy of the workflow and the library; Snakemake runs in it."""
    workdir = tmp_path / "workflow_copy"
    workdir.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copy2(REPO_ROOT / "Snakefile", workdir)
    shutil.copy2(REPO_ROOT / "config.yaml", workdir)
    shutil.copytree(REPO_ROOT / "workflow", workdir / "workflow", ignore=ignore)
    shutil.copytree(REPO_ROOT / "rnnlm", workdir / "rnnlm", ignore=ignore)
    return workdir


@pytest.fixture(scope="session")
def snakemake_env(tmp_path_factory) -> dict[str, str]:
    """Environment for Snakemake subprocesses.

    The SLURM executor plugin runs `scontrol show config` whenever Snakemake starts; on a machine
    with a SLURM client but no reachable controller that blocks for about ten seconds. Local runs
    never need it, so a stand-in `scontrol` that fails at once is put first on PATH.
    """
    bin_dir = tmp_path_factory.mktemp("bin")
    stand_in = bin_dir / "scontrol"
    stand_in.write_text("#!/bin/sh\nexit 1\n")
    stand_in.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture
def run_snakemake(snakemake_env):
    """run_snakemake(workdir, *args) -> CompletedProcess with text stdout/stderr (never raises on failure)."""

    def run(workdir: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "snakemake", "--cores", "2", *args],
            cwd=workdir, env=snakemake_env, capture_output=True, text=True, timeout=timeout,
        )

    return run
