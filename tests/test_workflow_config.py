"""The configuration as the Snakefile prepares it: command-line values read as the schema's types,
integral numbers as ints, cross-key checks, model selection (rnnlm.workflow_config)."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml
from snakemake.cli import parse_config
from snakemake.exceptions import WorkflowError
from snakemake.utils import update_config, validate

from rnnlm.io import RnnlmError
from rnnlm.workflow_config import finish, prepare, selected_models
from workflow_runs import job_counts, make_workdir, run_snakemake

REPO = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO / "workflow" / "schemas" / "config.schema.yaml"
SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))
CONFIG = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))


def load(*command_line: str, base: dict | None = None) -> dict:
    """What the Snakefile ends up with: config.yaml, `--config` entries merged in, prepared, validated."""
    config = copy.deepcopy(CONFIG if base is None else base)
    update_config(config, parse_config(list(command_line)))
    prepare(config, SCHEMA)
    validate(config, str(SCHEMA_PATH))
    return finish(config, SCHEMA)


def test_one_model_setting_changes_from_the_command_line():
    config = load("models={rnn: {hidden_size: 64, dropout: 0.25, averaging: false}}")
    rnn = config["models"]["rnn"]
    assert (rnn["hidden_size"], rnn["dropout"], rnn["averaging"]) == (64, 0.25, False)
    assert type(rnn["hidden_size"]) is int
    # The rest of the entry is config.yaml's, and the other model is untouched.
    assert rnn["epochs"] == CONFIG["models"]["rnn"]["epochs"]
    assert config["models"]["gru"]["hidden_size"] == CONFIG["models"]["gru"]["hidden_size"]


@pytest.mark.parametrize("text, expected", [("false", False), ("False", False), ("true", True), ("TRUE", True)])
def test_booleans_in_any_case(text, expected):
    assert load(f"lowercase={text}")["lowercase"] is expected


def test_words_that_are_no_boolean_are_still_rejected():
    with pytest.raises(WorkflowError, match=re.escape("On instance['lowercase']")):
        load("lowercase=perhaps")


@pytest.mark.parametrize("entry, expected", [("build_models=gru", ["gru"]), ("build_models=gru,rnn", ["gru", "rnn"]),
                                             ("build_models=[rnn, gru]", ["rnn", "gru"])])
def test_models_are_picked_from_the_command_line(entry, expected):
    config = load(entry)
    assert config["build_models"] == expected and selected_models(config) == expected


def test_without_build_models_every_model_is_built():
    assert selected_models(load()) == list(CONFIG["models"])


def test_build_models_must_name_defined_models():
    with pytest.raises(RnnlmError, match="build_models names lstm, which models: does not define"):
        load("build_models=rnn,lstm")


INTEGRAL_FLOATS = {
    "vocabulary_size": (("vocabulary_size",), 1e3),
    "split_seed": (("split_seed",), 0.0),
    "batch_size": (("models", "rnn", "batch_size"), 8.0),
    "seed": (("models", "rnn", "seed"), 1.0),
    "hidden_size": (("models", "gru", "hidden_size"), 16.0),
    "num_sentences": (("generate", "num_sentences"), 3.0),
    "order": (("baseline", "order"), 3.0),
}


@pytest.mark.parametrize("name", INTEGRAL_FLOATS)
def test_integral_floats_become_ints(name):
    path, value = INTEGRAL_FLOATS[name]
    base = copy.deepcopy(CONFIG)
    node = base
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    config = load(base=base)
    for key in path:
        config = config[key]
    assert config == int(value) and type(config) is int


def test_integral_floats_from_the_command_line_become_ints():
    assert type(load("vocabulary_size=1e3")["vocabulary_size"]) is int


def test_fractional_values_for_integers_are_rejected():
    with pytest.raises(WorkflowError, match=re.escape("On instance['models']['rnn']['batch_size']")):
        load("models={rnn: {batch_size: 2.5}}")


def test_valid_fraction_zero_is_rejected_with_the_reason():
    with pytest.raises(WorkflowError, match="must be > 0: the gradient diagnostics"):
        load("valid_fraction=0")


def test_defaults_are_filled_in_without_validation():
    # A module whose caller skips validation still gets complete model entries.
    config = {"corpus": "builtin", "vocabulary_size": 100, "models": {"m": {"cell": "gru"}}}
    prepare(config, SCHEMA)
    assert config["models"]["m"]["hidden_size"] == SCHEMA["$defs"]["model"]["properties"]["hidden_size"]["default"]
    assert config["generate"]["beam_width"] == SCHEMA["properties"]["generate"]["properties"]["beam_width"]["default"]


@pytest.mark.slow
def test_snakemake_plans_with_normalised_values(tmp_path, snakemake_env):
    """A config file's `order: 3.0` names results/baseline/kn3.json, and build_models picks one model."""
    workdir = make_workdir(tmp_path / "run", baseline={"order": 3.0})
    output = run_snakemake(workdir, "--dry-run", "--config", "build_models=tiny-relu", env=snakemake_env)
    assert "results/baseline/kn3.json" in output and "kn3.0" not in output
    plan = job_counts(output)
    assert plan["train"] == 1 and "results/models/tiny-relu/params.npz" in output
    assert "results/models/tiny-tanh" not in output


@pytest.mark.parametrize("entry, message", [
    ("models={rnn: {hiden_size: 64}}", "unknown configuration key 'hiden_size' in model 'rnn'; did you mean hidden_size?"),
    ("vocabluary_size=3", "unknown configuration key 'vocabluary_size' in the top level; did you mean vocabulary_size?"),
    ("generate={xyzzy: 3}", "unknown configuration key 'xyzzy' in generate; valid keys: num_sentences,"),
])
def test_a_misspelt_key_is_named_with_its_place_and_the_nearest_key(entry, message):
    with pytest.raises(RnnlmError, match=re.escape(message)):
        load(entry)


@pytest.mark.slow
def test_snakemake_reports_a_misspelt_model_key_in_a_few_lines(tmp_path, snakemake_env):
    workdir = make_workdir(tmp_path / "run")
    output = run_snakemake(workdir, "--dry-run", "--config", "models={tiny-tanh: {hiden_size: 8}}", env=snakemake_env,
                           expect_success=False)
    assert "config: unknown configuration key 'hiden_size' in model 'tiny-tanh'; did you mean hidden_size?" in output
    assert len(output.splitlines()) <= 8 and "additionalProperties" not in output


@pytest.mark.parametrize("configfile", sorted((REPO / "config").glob("*.yaml")), ids=lambda path: path.name)
def test_every_shipped_configfile_is_valid_over_config_yaml(configfile):
    """Each corpus file of config/ merges into config.yaml (as --configfile does) and validates."""
    base = copy.deepcopy(CONFIG)
    update_config(base, yaml.safe_load(configfile.read_text(encoding="utf-8")))
    config = load(base=base)
    assert config["models"], f"{configfile.name} leaves no model to train"
