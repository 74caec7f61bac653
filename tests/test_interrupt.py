"""An interrupted run: Snakemake is SIGKILLed while a model trains, then the recovery that
docs/cluster.md gives (`snakemake --unlock`, `snakemake --rerun-incomplete`) resumes training from
its checkpoint and ends with the same parameters as a run that was never interrupted."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest

from rnnlm.runlock import _process_state
from workflow_runs import artifact_digests, make_workdir, run_snakemake, snakemake_command, write_tiny_corpus

pytestmark = pytest.mark.slow

MODEL = "slow"
# About 0.2 s per epoch on the larger tiny corpus below: killable part way, done in seconds.
HYPERPARAMETERS = {"hidden_size": 64, "batch_size": 2, "epochs": 30, "patience": 1000, "learning_rate": 0.5, "seed": 5}
MODEL_DIR = f"results/models/{MODEL}"
TARGET = f"{MODEL_DIR}/params.npz"


def data_ready(workdir, env):
    make_workdir(workdir, models={MODEL: HYPERPARAMETERS})
    write_tiny_corpus(workdir / "corpus.txt", documents=150)
    run_snakemake(workdir, "--cores", "2", "--until", "index", env=env)
    return workdir


@pytest.fixture(scope="module")
def reference(tmp_path_factory, snakemake_env):
    """The model trained by a run that was never interrupted."""
    workdir = data_ready(tmp_path_factory.mktemp("uninterrupted"), snakemake_env)
    run_snakemake(workdir, "--cores", "2", TARGET, env=snakemake_env)
    return workdir


def training_with_a_checkpoint(workdir, env) -> subprocess.Popen:
    """`snakemake` (under `timeout`, in a session of its own) building the model, once training has
    written its first checkpoint."""
    run = subprocess.Popen(snakemake_command(workdir, "--cores", "2", TARGET, timeout_s=120), cwd=workdir,
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    checkpoint = workdir / MODEL_DIR / "checkpoint.npz"
    deadline = time.monotonic() + 100
    while not checkpoint.exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return run


def test_killed_training_resumes_from_its_checkpoint(tmp_path, snakemake_env, reference):
    workdir = data_ready(tmp_path / "interrupted", snakemake_env)
    # SIGKILL to the whole session reaches Snakemake and the training job it started, as when the
    # machine, the login session or the OOM killer ends the run.
    run = training_with_a_checkpoint(workdir, snakemake_env)
    checkpoint = workdir / MODEL_DIR / "checkpoint.npz"
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=30)
    assert checkpoint.exists() and not (workdir / TARGET).exists(), "the run was not killed during training"

    # Snakemake's lock outlives a SIGKILL: the next run refuses until it is removed.
    refused = run_snakemake(workdir, "--cores", "2", TARGET, env=snakemake_env, expect_success=False)
    assert "--unlock" in refused
    run_snakemake(workdir, "--unlock", env=snakemake_env)
    rerun = run_snakemake(workdir, "--cores", "2", "--rerun-incomplete", TARGET, env=snakemake_env)
    assert re.search(r"resuming from \S+ after epoch \d+", rerun), "the resume line did not reach the terminal"

    train_log = (workdir / f"results/logs/train/{MODEL}.log").read_text(encoding="utf-8")
    resumed = re.search(r"resuming from \S+ after epoch (\d+)", train_log)
    assert resumed and int(resumed.group(1)) >= 1, train_log[-2000:]
    after_resume = train_log.split(resumed.group(0), 1)[1]
    assert re.search(rf"epoch {int(resumed.group(1)) + 1}/\d+, train loss", after_resume), train_log[-2000:]
    assert not re.search(r"epoch 1/\d+, train loss", after_resume), "epoch 1 was trained again"

    # Same parameters file and same training log (wall times aside) as the uninterrupted run.
    assert model_digests(workdir) == model_digests(reference)


def model_digests(workdir) -> dict[str, str]:
    return {name: digest for name, digest in artifact_digests(workdir).items() if name.startswith("models/")}


def test_a_trainer_orphaned_by_killing_snakemake_alone_stops_and_resumes(tmp_path, snakemake_env, reference):
    """kill -9 of Snakemake only: its training job notices, stops (keeping its checkpoint) instead of
    training on beside the trainer of the next run, and the README's recovery resumes it."""
    workdir = data_ready(tmp_path / "orphaned", snakemake_env)
    run = training_with_a_checkpoint(workdir, snakemake_env)
    trainer = int((workdir / MODEL_DIR / "checkpoint.npz.lock").read_text())  # the lock holds its pid
    with open(f"/proc/{run.pid}/task/{run.pid}/children") as children:  # run.pid is `timeout`
        snakemake = int(children.read().split()[0])
    os.kill(snakemake, signal.SIGKILL)
    run.wait(timeout=30)
    deadline = time.monotonic() + 20
    while _process_state(trainer) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _process_state(trainer) is None, "the orphaned trainer kept running"
    assert not (workdir / TARGET).exists(), "training ended before Snakemake was killed"
    train_log = (workdir / f"results/logs/train/{MODEL}.log").read_text(encoding="utf-8")
    assert f"Snakemake (pid {snakemake}) is gone: stopping training" in train_log

    run_snakemake(workdir, "--unlock", env=snakemake_env)
    run_snakemake(workdir, "--cores", "2", "--rerun-incomplete", TARGET, env=snakemake_env)
    assert "resuming from" in (workdir / f"results/logs/train/{MODEL}.log").read_text(encoding="utf-8")
    assert model_digests(workdir) == model_digests(reference)
