"""Deployment and reuse: the workflow run from another directory without a config.yaml there, used as a
Snakemake module by another workflow, and its package metadata (licence, version, catalog file)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rnnlm import __version__
from rnnlm.io import load_npz
from rnnlm.data import Split
from rnnlm.resources import train_minutes
from rnnlm.vocab import Vocabulary
from workflow_runs import REPO, make_workdir, run_snakemake, write_tiny_corpus

TINY = {"hidden_size": 8, "learning_rate": 0.5, "batch_size": 16, "epochs": 2, "seed": 3}


def test_version_flag():
    result = subprocess.run([sys.executable, "-m", "rnnlm.cli", "--version"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == f"rnnlm {__version__}"


def test_licence_and_catalog_metadata():
    assert (REPO / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert 'license = "MIT"' in pyproject and 'version = {attr = "rnnlm.__version__"}' in pyproject
    catalog = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text(encoding="utf-8"))
    assert catalog["usage"]["software-stack-deployment"]["conda"] is True and catalog["usage"]["report"] is True


def dry_run_resources(output: str, rule: str) -> list[str]:
    """The `resources:` lines of every job of `rule` in a dry run's output."""
    blocks = re.split(r"\n(?=\[[^\n]*\]\nrule |rule )", output)
    return [re.search(r"resources: (.*)", block).group(1) for block in blocks
            if re.match(rf"(\[[^\n]*\]\n)?rule {rule}:", block.strip())]


@pytest.mark.slow
def test_runs_in_another_directory_with_the_workflows_own_config(tmp_path, snakemake_env):
    """No config.yaml in the working directory: the workflow's own is the base; a --configfile and
    --config entries adjust it, and build_models picks the one model to build."""
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    write_tiny_corpus(workdir / "corpus.txt")
    settings = {"corpus": "corpus.txt", "vocabulary_size": 40, "valid_fraction": 0.1, "test_fraction": 0.1,
                "device": "cpu", "build_models": ["tiny"], "models": {"tiny": TINY},
                "generate": {"num_sentences": 3, "min_length": 2, "max_length": 12, "beam_width": 2},
                "diagnostics": {"max_distance": 4, "max_sentences": 10, "batch_size": 5}}
    (workdir / "small.yaml").write_text(yaml.safe_dump(settings), encoding="utf-8")
    args = ["--configfile", "small.yaml", "--config", "models={tiny: {hidden_size: 6}}", "lowercase=false"]

    output = run_snakemake(workdir, "--cores", "2", *args, env=snakemake_env, timeout_s=600)
    assert f"Config file {REPO / 'config.yaml'} is extended" in output
    assert not (workdir / "config.yaml").exists()
    assert sorted(p.name for p in (workdir / "results/models").iterdir()) == ["tiny"]
    assert (workdir / "results/report/perplexity.csv").exists()
    params = load_npz(workdir / "results/models/tiny/params.npz")
    assert json.loads(str(params["config_json"]))["hidden_size"] == 6
    assert json.loads((workdir / "results/tokens/stats.json").read_text())["lowercase"] is False

    # With the index matrices in place, train's runtime is the estimate from the data.
    plan = run_snakemake(workdir, "--dry-run", "--forcerun", "train", *args, env=snakemake_env)
    [resources] = dry_run_resources(plan, "train")
    hyper = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())  # defaults come next
    hyper = {key: spec["default"] for key, spec in hyper["$defs"]["model"]["properties"].items()}
    hyper.update(TINY, hidden_size=6)
    expected = train_minutes(hyper, len(Vocabulary.load(workdir / "results/vocab/vocab.tsv")),
                             Split.count_tokens(workdir / "results/data/train.npz"),
                             Split.count_tokens(workdir / "results/data/valid.npz"), 1e10, 1440)
    assert f"runtime={expected}," in resources


CALLER_SNAKEFILE = """\
configfile: "config.yaml"


module rnnlm:
    snakefile:
        "{snakefile}"
    config:
        config


use rule * from rnnlm as rnnlm_*


rule which_rnnlm:
    output:
        "which_rnnlm.txt",
    script:
        "which_rnnlm.py"
"""
# Run like the workflow's own scripts: a job of the caller's, with the environment the module set up.
WHICH_RNNLM = """\
import rnnlm

with open(snakemake.output[0], "w") as handle:
    handle.write(rnnlm.__file__)
"""


@pytest.mark.slow
def test_used_as_a_module_jobs_import_the_modules_own_package(tmp_path, workflow_copy, snakemake_env):
    """The caller's directory holds a decoy `rnnlm` package: jobs must import the module's copy."""
    caller = make_workdir(tmp_path / "caller", models={"tiny": TINY})
    (caller / "Snakefile").write_text(CALLER_SNAKEFILE.format(snakefile=workflow_copy / "Snakefile"))
    (caller / "which_rnnlm.py").write_text(WHICH_RNNLM)
    (caller / "rnnlm").mkdir()
    (caller / "rnnlm" / "__init__.py").write_text('raise ImportError("the caller\'s directory was searched")\n')
    (workflow_copy / "config.yaml").unlink()  # the caller's config is the only one

    targets = ["results/models/tiny/metrics.json", "which_rnnlm"]
    result = subprocess.run(["timeout", "-s", "KILL", "900", sys.executable, "-m", "snakemake", "--cores", "2",
                             *targets], cwd=caller, env=snakemake_env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    imported = Path((caller / "which_rnnlm.txt").read_text().strip())
    assert imported == workflow_copy / "rnnlm" / "__init__.py"
    assert json.loads((caller / "results/models/tiny/metrics.json").read_text())["splits"]["test"]["tokens"] > 0
