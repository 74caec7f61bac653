"""One trainer per checkpoint, and a training job that stops when the Snakemake that started it dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rnnlm.io import RnnlmError
from rnnlm.runlock import _is_snakemake, _process_state, exclusive_lock, snakemake_ancestor, stop_with_snakemake
from rnnlm.train import run_training
from tiny_language import FAST, write_tiny_data

REPO = Path(__file__).resolve().parents[1]


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path):
    checkpoint = tmp_path / "m" / "checkpoint.npz"
    with exclusive_lock(checkpoint):
        assert (tmp_path / "m" / "checkpoint.npz.lock").read_text() == f"{os.getpid()}\n"
        with pytest.raises(RnnlmError, match=rf"another training process \(pid {os.getpid()}\) is training into "
                                             rf"{tmp_path / 'm'}.*kill {os.getpid()}"):
            with exclusive_lock(checkpoint):
                pass
    assert list((tmp_path / "m").iterdir()) == []
    with exclusive_lock(checkpoint):  # free again
        pass


def test_a_stale_lock_file_of_a_killed_trainer_does_not_block(tmp_path):
    (tmp_path / "checkpoint.npz.lock").write_text("999999\n")
    with exclusive_lock(tmp_path / "checkpoint.npz"):
        assert (tmp_path / "checkpoint.npz.lock").read_text() == f"{os.getpid()}\n"


def test_training_refuses_a_checkpoint_another_trainer_holds_before_any_work(tmp_path):
    data, vocab = write_tiny_data(tmp_path)
    out = tmp_path / "m"
    other = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from rnnlm.runlock import exclusive_lock
        with exclusive_lock({str(out / 'checkpoint.npz')!r}):
            print("locked", flush=True)
            time.sleep(60)
        """)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline() == "locked\n"
        with pytest.raises(RnnlmError, match=rf"another training process \(pid {other.pid}\)"):
            run_training(data / "train.npz", data / "valid.npz", vocab, out / "params.npz", out / "checkpoint.npz",
                         out / "train_log.csv", FAST, device="cpu", progress=False)
    finally:
        other.kill()
        other.wait()
    assert sorted(path.name for path in out.iterdir()) == ["checkpoint.npz.lock"]  # stale, harmless
    run_training(data / "train.npz", data / "valid.npz", vocab, out / "params.npz", out / "checkpoint.npz",
                 out / "train_log.csv", {**FAST, "epochs": 1}, device="cpu", progress=False)
    assert sorted(path.name for path in out.iterdir()) == ["params.npz", "train_log.csv"]


# A stand-in for Snakemake (its command line says so) that starts a "training job" and waits for it.
PARENT = textwrap.dedent("""
    import subprocess, sys
    job = subprocess.Popen([sys.executable, "-c", sys.argv[1]])
    print(job.pid, flush=True)
    job.wait()
""")
JOB = textwrap.dedent("""
    import time
    from rnnlm.runlock import stop_with_snakemake
    print("watching" if stop_with_snakemake(poll_seconds=0.05) else "not watching", flush=True)
    time.sleep(60)
""")


def test_a_job_stops_when_its_snakemake_is_killed(tmp_path):
    (tmp_path / "snakemake").write_text(PARENT)  # run as a console script is: python .../snakemake ...
    parent = subprocess.Popen([sys.executable, str(tmp_path / "snakemake"), JOB], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    job = int(parent.stdout.readline())
    assert parent.stdout.readline() == "watching\n"
    assert _process_state(job) is not None
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while _process_state(job) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _process_state(job) is None, "the orphaned job kept running"


@pytest.mark.parametrize("command, expected", [
    ("/usr/bin/python3 /usr/local/bin/snakemake --cores 2", True),
    ("/usr/bin/python3 -m snakemake --cores 2", True),
    ("snakemake --cores 2", True),
    ("/bin/bash -c source activate env; python /w/.snakemake/scripts/tmp1.train.py", False),
    ("/usr/bin/python3 /w/.snakemake/scripts/tmp1.train.py", False),
])
def test_what_counts_as_snakemake(command, expected):
    assert _is_snakemake([part.encode() for part in command.split(" ")]) is expected


def test_without_a_snakemake_ancestor_nothing_is_watched():
    # pytest's ancestors are not Snakemake (the test suite is not run by it).
    assert snakemake_ancestor() is None and stop_with_snakemake() is None
