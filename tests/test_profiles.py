"""The Snakemake profiles and the example sweep, checked without a cluster."""

from __future__ import annotations

import re
import shutil

import pytest
import yaml

from workflow_runs import REPO, job_counts, run_snakemake

PROFILES = REPO / "profiles"


def load(path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_slurm_profile_and_test_cluster_agree():
    slurm = load(PROFILES / "slurm" / "config.yaml")
    assert slurm["executor"] == "slurm"
    # Without slurmdbd only squeue knows job states; the plugin silently falls back to sacct
    # (and then waits forever) unless MinJobAge >= 3 x the initial status-check delay.
    assert slurm["slurm-status-command"] == "squeue"
    min_job_age = int(re.search(r"^MinJobAge=(\d+)", (REPO / "tests/cluster/slurm.conf.in").read_text(),
                                re.MULTILINE).group(1))
    assert min_job_age >= 3 * slurm["slurm-init-seconds-before-status-checks"]
    # Partition and account are site settings: examples only, never active.
    assert "default-resources" not in slurm and "set-resources" not in slurm


def test_workflow_profile_leaves_cluster_settings_to_the_cluster_profile():
    # profiles/default is read on every run and wins over --profile key by key.
    default = load(PROFILES / "default" / "config.yaml")
    assert not set(default) & {"executor", "jobs", "default-resources", "set-resources", "slurm-status-command"}


def test_every_profile_entry_is_commented():
    for path in PROFILES.glob("*/config.yaml"):
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        for previous, line in zip(lines, lines[1:]):
            if re.match(r"[A-Za-z]", line):
                assert previous.startswith("#"), f"{path}: no comment above {line!r}"


@pytest.mark.slow
def test_sweep_runs_each_model_as_its_own_jobs(tmp_path, snakemake_env):
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    sweep = REPO / "config" / "sweep.yaml"
    output = run_snakemake(tmp_path, "--dry-run", "--configfile", str(sweep), env=snakemake_env)
    # Every rule runs a script, so printed shell commands would only say "None".
    assert "Shell command" not in output
    plan = job_counts(output)
    models = load(sweep)["build_models"]
    assert len(models) == 3
    for rule in ("train", "evaluate", "generate"):
        assert plan[rule] == len(models)
    for rule in ("download", "tokenize", "vocab", "index"):
        assert plan[rule] == 1
