"""One source of truth for each default: the library's dataclasses for model, training and generation
settings, the schema for the rest. config.yaml and config/README.md must agree with them."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from rnnlm.generate import GenerateConfig
from rnnlm.model import ModelConfig
from rnnlm.train_config import TrainConfig

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text(encoding="utf-8"))
CONFIG = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
MODEL_SCHEMA = SCHEMA["$defs"]["model"]["properties"]
# ModelConfig fields that come from the data and the top-level dtype, not from a models: entry.
NOT_PER_MODEL = {"vocab_size", "dtype"}


def dataclass_defaults(*classes, skip=()) -> dict:
    return {field.name: field.default for cls in classes for field in dataclasses.fields(cls)
            if field.name not in skip}


def schema_defaults(properties: dict) -> dict:
    return {key: spec["default"] for key, spec in properties.items() if "default" in spec}


def test_model_entry_defaults_are_the_dataclasses():
    library = dataclass_defaults(ModelConfig, TrainConfig, skip=NOT_PER_MODEL)
    assert set(MODEL_SCHEMA) == set(library), "the schema's $defs/model and ModelConfig/TrainConfig list other keys"
    assert schema_defaults(MODEL_SCHEMA) == library


def test_generate_defaults_are_the_dataclass():
    assert schema_defaults(SCHEMA["properties"]["generate"]["properties"]) == dataclass_defaults(GenerateConfig)


def test_config_yaml_model_entries_list_only_what_differs():
    for name, entry in CONFIG["models"].items():
        repeated = {key: value for key, value in entry.items() if MODEL_SCHEMA[key].get("default") == value
                    and type(MODEL_SCHEMA[key].get("default")) is type(value)}
        assert not repeated, f"config.yaml's model {name} repeats defaults {repeated}: drop them"


def test_config_yaml_shows_the_schema_defaults_outside_models():
    def compare(values: dict, properties: dict, where: str):
        for key, value in values.items():
            spec = properties[key]
            if spec.get("type") == "object" and "properties" in spec:
                compare(value, spec["properties"], f"{where}{key}.")
            elif key != "models":
                assert "default" in spec or key in SCHEMA["required"], f"{where}{key} has no default"
                if "default" in spec:
                    assert value == spec["default"], (f"config.yaml sets {where}{key}: {value!r} but the schema's "
                                                      f"default is {spec['default']!r}: change the default there")

    compare(CONFIG, SCHEMA["properties"], "")


def documented_defaults() -> dict[str, str]:
    """key -> default cell of every table row of config/README.md (model keys bare, others dotted)."""
    rows = re.findall(r"^\| `([\w.]+)` \| (required|`[^`]*`) \|", (REPO / "config/README.md").read_text(encoding="utf-8"),
                      re.MULTILINE)
    return {key: cell for key, cell in rows}


def schema_keys() -> dict[str, dict]:
    keys = {}
    for key, spec in SCHEMA["properties"].items():
        if spec.get("type") == "object" and "properties" in spec:
            keys.update({f"{key}.{sub}": sub_spec for sub, sub_spec in spec["properties"].items()})
        else:
            keys[key] = spec
    keys.update(MODEL_SCHEMA)
    return keys


def test_config_readme_describes_every_key():
    documented = documented_defaults()
    assert set(documented) == set(schema_keys())


@pytest.mark.parametrize("key", sorted(schema_keys()))
def test_config_readme_states_each_default(key):
    spec, cell = schema_keys()[key], documented_defaults()[key]
    if "default" not in spec:
        assert cell == "required"
    else:
        assert yaml.safe_load(cell.strip("`")) == spec["default"], f"config/README.md: {key} default {cell}"
