"""The workflow through Snakemake's SLURM executor on a real single-node cluster.

These tests change the system (start-slurm.sh apt-installs slurmctld, slurmd and munge and starts
their daemons), so they run only when asked: `RNNLM_SLURM_TESTS=1 python -m pytest -m slurm`
(tests/conftest.py skips them otherwise; `.ci/run` asks). The session fixture starts the daemons
and stops exactly the ones it started at the end. Once asked, a cluster that cannot start (no root,
no apt) is a failure naming the reason, not a skip.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from conftest import SLURM_TESTS_VARIABLE
from workflow_runs import REPO, TWO_MODELS, artifact_digests, differing, job_counts, make_workdir, run_snakemake

CLUSTER = REPO / "tests" / "cluster"
SLURM_PROFILE = REPO / "profiles" / "slurm"
JOB_COMPLETION_LOG = Path("/var/log/rnnlm-slurm/jobcomp.txt")

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

# Keep the cluster run short on a small machine. Each SLURM job pays for two Snakemake start-ups,
# and the plugin polls first after the init delay, then 10 s later each time nothing finished,
# so fewer, bigger jobs finish much sooner: the test groups the data stages into one sbatch job
# and each model's stages into one job per model, the two models side by side. The targets are
# the pipeline proper (data, then train, evaluate and generate per model); baselines, diagnostics
# and report figures are compared between identical runs in test_rebuild.py.
TEST_GROUPS = {
    "data": ["download", "tokenize", "vocab", "index"],
    "model": ["train", "evaluate", "generate"],
}
FAST_SLURM_OPTIONS = [
    "--jobs", "2",
    # A group job asks for as many CPUs as its jobs could use at once, capped by --cores: one
    # CPU each lets both model jobs share this node instead of queueing.
    "--cores", "1",
    "--max-threads", "1",
    "--slurm-init-seconds-before-status-checks", "8",
    "--groups", *(f"{rule}={group}" for group, rules in TEST_GROUPS.items() for rule in rules),
    # Last, so that targets after these options are not taken for more --groups values.
    "--latency-wait", "5",
]


def model_targets(models) -> list[str]:
    return [f"results/models/{model}/{artifact}" for model in models for artifact in ("metrics.json", "samples.txt")]


def unavailable(reason: str) -> None:
    """The tests were asked for (conftest skips them otherwise), so a missing cluster is a failure."""
    pytest.fail(f"SLURM tests asked for ({SLURM_TESTS_VARIABLE}=1) but cannot run: {reason}")


def slurm_installable() -> str | None:
    """Why start-slurm.sh cannot work here, or None."""
    if os.geteuid() != 0:
        return "needs root (apt-get installs SLURM; slurmd runs as root)"
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        return "SLURM is not installed and there is no apt-get to install it"
    return None


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    reason = slurm_installable()
    if reason:
        unavailable(reason)
    record = tmp_path_factory.mktemp("slurm") / "started-daemons"
    stop = ["timeout", "-s", "KILL", "120", str(CLUSTER / "stop-slurm.sh"), "--record", str(record), "--cancel-jobs"]
    started = subprocess.run(["timeout", "-s", "KILL", "300", str(CLUSTER / "start-slurm.sh"), "--record", str(record)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if started.returncode != 0:
        subprocess.run(stop, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        unavailable(f"cannot start the single-node SLURM cluster:\n{started.stdout[-3000:]}")
    try:
        yield
    finally:
        stopped = subprocess.run(stop, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert stopped.returncode == 0, stopped.stdout


def job_records(log_text: str, workdir: Path) -> dict[str, dict[str, str]]:
    """SLURM job id -> its job-completion record (JobState, SubmitTime, EndTime, ...; times in ISO
    format, so they compare as strings), for the jobs that ran in `workdir`."""
    jobs = {}
    for line in log_text.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if fields.get("WorkDir") == str(workdir):
            jobs[fields["JobId"]] = fields
    return jobs


def completed_jobs(log_text: str, workdir: Path) -> dict[str, str]:
    """SLURM job id -> final state, for the job-completion records of jobs that ran in `workdir`."""
    return {job: fields["JobState"] for job, fields in job_records(log_text, workdir).items()}


def rules_run_in_slurm(workdir: Path) -> tuple[Counter, set[str]]:
    """Rule jobs executed inside SLURM jobs, and the SLURM job ids, from the plugin's job logs
    (.snakemake/slurm_logs/<rule or group>/.../<SLURM id>.log, the sbatch output file): inside a
    job, Snakemake announces each rule it runs as `localrule <name>:`."""
    rules: Counter = Counter()
    job_ids = set()
    for log in (workdir / ".snakemake" / "slurm_logs").rglob("*.log"):
        job_ids.add(log.stem)
        rules.update(re.findall(r"^localrule (\w+):$", log.read_text(encoding="utf-8"), flags=re.MULTILINE))
    return rules, job_ids


def slurm_jobs_running(workdir: Path, rule: str) -> set[str]:
    """The SLURM job ids whose plugin job log shows `rule` running inside them."""
    return {log.stem for log in (workdir / ".snakemake" / "slurm_logs").rglob("*.log")
            if re.search(rf"^localrule {rule}:$", log.read_text(encoding="utf-8"), flags=re.MULTILINE)}


def test_two_model_sweep_through_slurm_matches_local_run(slurm_cluster, tmp_path):
    workdir = make_workdir(tmp_path / "sweep")
    targets = model_targets(TWO_MODELS)
    local_output = run_snakemake(workdir, "--cores", "2", *targets)
    local_digests = artifact_digests(workdir)
    local_jobs = job_counts(local_output)
    assert local_jobs["train"] == local_jobs["evaluate"] == local_jobs["generate"] == len(TWO_MODELS)

    # Same directory, from scratch: the artifacts must not depend on where the jobs ran.
    shutil.rmtree(workdir / "results")
    shutil.rmtree(workdir / ".snakemake")
    log_offset = JOB_COMPLETION_LOG.stat().st_size if JOB_COMPLETION_LOG.exists() else 0
    slurm_output = run_snakemake(workdir, "--profile", str(SLURM_PROFILE), *FAST_SLURM_OPTIONS,
                                 "--slurm-keep-successful-logs", *targets, timeout_s=420)
    assert job_counts(slurm_output) == local_jobs

    # Every rule job ran inside an sbatch job, and every one of those jobs completed.
    rules_in_slurm, slurm_job_ids = rules_run_in_slurm(workdir)
    assert rules_in_slurm == local_jobs
    with open(JOB_COMPLETION_LOG, encoding="utf-8") as handle:
        handle.seek(log_offset)
        finished = completed_jobs(handle.read(), workdir)
    assert set(finished) == slurm_job_ids
    assert set(finished.values()) == {"COMPLETED"}

    assert differing(local_digests, artifact_digests(workdir)) == []


def test_four_tokenize_shards_run_as_parallel_slurm_jobs(slurm_cluster, tmp_path):
    """`tokenize_shards: 4`: each shard is its own sbatch job, Snakemake submits all four before any
    finishes, and the data artifacts equal those of a local unsharded run byte for byte."""
    workdir = make_workdir(tmp_path / "shards")
    targets = ["results/data/stats.json"]
    run_snakemake(workdir, "--cores", "2", *targets)
    local_digests = artifact_digests(workdir)

    shutil.rmtree(workdir / "results")
    shutil.rmtree(workdir / ".snakemake")
    log_offset = JOB_COMPLETION_LOG.stat().st_size if JOB_COMPLETION_LOG.exists() else 0
    # The stages before and after the shards are grouped into one job each; the shards are not.
    groups = {"prepare": ["download", "sentence_splitter"], "merge": ["tokenize", "vocab", "index"]}
    run_snakemake(workdir, "--profile", str(SLURM_PROFILE), "--config", "tokenize_shards=4", "--jobs", "4",
                  "--cores", "1", "--max-threads", "1", "--slurm-init-seconds-before-status-checks", "8",
                  "--groups", *(f"{rule}={group}" for group, rules in groups.items() for rule in rules),
                  "--latency-wait", "5", "--slurm-keep-successful-logs", *targets, timeout_s=420)

    shard_jobs = slurm_jobs_running(workdir, "tokenize_shard")
    assert len(shard_jobs) == 4
    with open(JOB_COMPLETION_LOG, encoding="utf-8") as handle:
        handle.seek(log_offset)
        records = job_records(handle.read(), workdir)
    assert {records[job]["JobState"] for job in records} == {"COMPLETED"}
    assert max(records[job]["SubmitTime"] for job in shard_jobs) < min(records[job]["EndTime"] for job in shard_jobs)

    digests = artifact_digests(workdir)
    assert set(digests) - set(local_digests) == {"tokens/punkt.json"}
    assert differing({name: digests[name] for name in local_digests}, local_digests) == []


def test_gpu_request_reaches_sbatch(slurm_cluster, tmp_path):
    """`device: gpu` makes training ask SLURM for a GPU. This node has none, so sbatch refuses the
    job at submission, which proves the request reached it (and needs no CuPy)."""
    workdir = make_workdir(tmp_path / "gpu", device="gpu")
    run_snakemake(workdir, "--cores", "2", "--until", "index")
    run_snakemake(workdir, "--profile", str(SLURM_PROFILE), "--jobs", "1", "results/models/tiny-tanh/params.npz",
                  timeout_s=240, expect_success=False)
    # The sbatch call and SLURM's answer go to Snakemake's log file, not to its terminal output.
    run_log = max((workdir / ".snakemake" / "log").glob("*.snakemake.log"))  # names start with the time
    text = run_log.read_text(encoding="utf-8")
    assert "--gpus=1" in text
    assert "Invalid generic resource (gres) specification" in text

