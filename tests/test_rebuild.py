"""Reproducible rebuilds on CPU: the same config and seeds give byte-identical artifacts for every
stage; a deleted artifact is rebuilt on its own, and what depends on it re-runs only if its bytes
changed; `snakemake --summary` and `--list-changes` report what a change would re-run."""

from __future__ import annotations

import shutil

import pytest

from workflow_runs import TWO_MODELS, artifact_digests, differing, job_counts, make_workdir, run_snakemake

pytestmark = pytest.mark.slow

MODEL = "tiny-tanh"
STAGE_DIRS = {"corpus", "tokens", "vocab", "data", "models", "baseline", "diagnostics", "report"}


@pytest.fixture(scope="module")
def built(tmp_path_factory, snakemake_env):
    """The whole workflow (one small model) built twice from scratch in the same directory:
    (workdir, digests of the first build, digests of the second, env for Snakemake)."""
    workdir = make_workdir(tmp_path_factory.mktemp("rebuild") / "run", models={MODEL: TWO_MODELS[MODEL]})
    run_snakemake(workdir, "--cores", "2", env=snakemake_env)
    first = artifact_digests(workdir)
    shutil.rmtree(workdir / "results")
    shutil.rmtree(workdir / ".snakemake")
    run_snakemake(workdir, "--cores", "2", env=snakemake_env)
    return workdir, first, artifact_digests(workdir), snakemake_env


def planned_jobs(workdir, env, *args) -> dict:
    """Jobs per rule that `snakemake --dry-run` would run (empty when everything is up to date)."""
    return dict(job_counts(run_snakemake(workdir, "--dry-run", *args, env=env)))


def test_same_config_and_seeds_give_identical_bytes_for_every_stage(built):
    _, first, second, _ = built
    assert {name.split("/")[0] for name in first} >= STAGE_DIRS
    assert differing(first, second) == []


@pytest.mark.parametrize("artifact, rule, downstream", [
    ("tokens/sentences.txt", "tokenize", {}),
    ("data/train.npz", "index", {}),
    # Retraining rewrites train_log.csv with new wall and CPU times, so the figures drawn from it
    # are rebuilt too (the loss curves to the same bytes); nothing else changes.
    (f"models/{MODEL}/params.npz", "train", {"report_loss_curves": 1, "report_time_to_quality": 1}),
    (f"models/{MODEL}/metrics.json", "evaluate", {}),
])
def test_deleted_artifact_is_rebuilt_alone_and_downstream_only_if_changed(built, artifact, rule, downstream):
    workdir, reference, _, env = built
    path = workdir / "results" / artifact
    path.unlink()
    assert planned_jobs(workdir, env, f"results/{artifact}") == {rule: 1}
    run_snakemake(workdir, "--cores", "2", f"results/{artifact}", env=env)
    # Snakemake compares the stored checksums of rebuilt inputs: identical bytes, no re-run.
    assert planned_jobs(workdir, env) == ({**downstream, "all": 1} if downstream else {})
    run_snakemake(workdir, "--cores", "2", env=env)
    assert differing(reference, artifact_digests(workdir)) == []


def test_changed_bytes_rerun_downstream_and_restored_bytes_do_not(built):
    workdir, _, _, env = built
    sentences = workdir / "results" / "tokens" / "sentences.txt"
    original = sentences.read_bytes()
    sentences.write_bytes(original.replace(b"the", b"a"))
    plan = planned_jobs(workdir, env)
    assert plan["split"] == plan["vocab"] == plan["index"] == plan["train"] == 1 and "tokenize" not in plan
    sentences.write_bytes(original)  # newer than everything downstream, but the same bytes
    assert planned_jobs(workdir, env) == {}


def test_summary_and_list_changes(built):
    workdir, reference, _, env = built
    summary = run_snakemake(workdir, "--summary", env=env)
    rows = [line.split("\t") for line in summary.splitlines() if line.startswith("results/")]
    listed = {row[0].removeprefix("results/"): row for row in rows}
    assert {name for name in reference if not name.endswith("checkpoint.npz")} <= set(listed)
    assert {row[-1] for row in rows} == {"no update"}

    # A vocabulary setting: the vocabulary and everything after it is pending, the corpus is not.
    changed = run_snakemake(workdir, "--summary", "--config", "vocabulary_size=30", env=env)
    plan = {line.split("\t")[0]: line.split("\t")[-1] for line in changed.splitlines() if line.startswith("results/")}
    assert plan["results/vocab/vocab.tsv"] == plan[f"results/models/{MODEL}/params.npz"] == "update pending"
    assert plan["results/corpus/documents.jsonl"] == plan["results/tokens/sentences.txt"] == "no update"
    params_changes = run_snakemake(workdir, "--list-changes", "params", "--config", "vocabulary_size=30", env=env)
    assert "results/vocab/vocab.tsv" in params_changes.split()
    # A split setting: the splits, the vocabulary (the train split's) and what follows; not the sentences.
    changed = run_snakemake(workdir, "--summary", "--config", "split_seed=9", env=env)
    plan = {line.split("\t")[0]: line.split("\t")[-1] for line in changed.splitlines() if line.startswith("results/")}
    assert plan["results/tokens/valid.txt"] == plan["results/vocab/vocab.tsv"] == plan["results/data/test.npz"] == "update pending"
    assert plan["results/tokens/sentences.txt"] == "no update"

    # Nothing changed: no input-set or code changes are listed.
    for kind in ("input", "code"):
        assert not [line for line in run_snakemake(workdir, "--list-changes", kind, env=env).splitlines()
                    if line.startswith("results/")]
    # Another corpus file is another input: the download stage's outputs are listed.
    shutil.copy(workdir / "corpus.txt", workdir / "other.txt")
    input_changes = run_snakemake(workdir, "--list-changes", "input", "--config", "corpus=other.txt", env=env)
    assert "results/corpus/documents.jsonl" in input_changes.split()


def test_execution_settings_rerun_nothing(built):
    """Where and how fast a job runs is not what it makes: `device` and threads are no params."""
    workdir, _, _, env = built
    assert planned_jobs(workdir, env, "--config", "device=auto") == {}
    assert planned_jobs(workdir, env, "--set-threads", "train=2", "evaluate=2") == {}


def test_list_changes_params_lists_unchanged_files_only_through_a_snakemake_bug(built):
    """`--list-changes params` is not empty after a clean run, and no workflow setting can make it:
    Snakemake 9's ParamsChange `|` returns the no-change record of the last output file it looked
    at, which is falsy yet iterates over that file, and list_changes prints what it iterates. So
    one file per job with params is listed although nothing changed (`-n` and `--summary` agree
    that nothing would run). If this test fails, Snakemake fixed it: the list must then be empty
    here, and README/docs/cluster.md can drop their warning."""
    from snakemake.persistence import NO_PARAMS_CHANGE, ParamsChange

    merged = NO_PARAMS_CHANGE | ParamsChange(files={"out.txt"})
    assert not merged and list(merged) == ["out.txt"]
    workdir, _, _, env = built
    listed = [line for line in run_snakemake(workdir, "--list-changes", "params", env=env).splitlines()
              if line.startswith("results/")]
    summary = {line.split("\t")[0]: line.split("\t")[-1] for line in run_snakemake(workdir, "--summary", env=env)
               .splitlines() if line.startswith("results/")}
    assert listed and {summary[name] for name in listed} == {"no update"}
    assert planned_jobs(workdir, env) == {}
