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


def test_killed_training_resumes_from_its_checkpoint(tmp_path, snakemake_env):
    reference = data_ready(tmp_path / "uninterrupted", snakemake_env)
    run_snakemake(reference, "--cores", "2", TARGET, env=snakemake_env)

    workdir = data_ready(tmp_path / "interrupted", snakemake_env)
    # A session of its own, so that SIGKILL reaches Snakemake and the training job it started,
    # as when the machine, the login session or the OOM killer ends the run. (Killing Snakemake
    # alone would leave the orphaned job training on to the end.)
    run = subprocess.Popen(snakemake_command(workdir, "--cores", "2", TARGET, timeout_s=120), cwd=workdir,
                           env=snakemake_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    checkpoint = workdir / MODEL_DIR / "checkpoint.npz"
    deadline = time.monotonic() + 100
    while not checkpoint.exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=30)
    assert checkpoint.exists() and not (workdir / TARGET).exists(), "the run was not killed during training"

    # Snakemake's lock outlives a SIGKILL: the next run refuses until it is removed.
    refused = run_snakemake(workdir, "--cores", "2", TARGET, env=snakemake_env, expect_success=False)
    assert "--unlock" in refused
    run_snakemake(workdir, "--unlock", env=snakemake_env)
    run_snakemake(workdir, "--cores", "2", "--rerun-incomplete", TARGET, env=snakemake_env)

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
