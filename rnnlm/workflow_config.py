"""The workflow's configuration between loading and use: the Snakefile calls `prepare` before and
`finish` after validating it against workflow/schemas/config.schema.yaml.

- `snakemake --config key=value` hands nested values over as strings ("models={rnn: {hidden_size:
  64}}" gives hidden_size "64") and only `True`/`False` as booleans; `prepare` reads such strings as
  the number, boolean or list the schema asks for, and fills in the schema's defaults.
- JSON Schema counts 1000.0 as an integer; `finish` turns every integral number where the schema
  wants an integer into an int once, so no stage sees 8.0 for a batch size or looks for kn3.0.json.
- `prepare` first refuses a key the schema does not know, in one line naming it, where it is (the
  model, for a model's key) and the nearest valid key (the schema's own message would list the
  whole object schema).
- `finish` also checks what one key cannot say on its own (`build_models` names defined models).
"""

from __future__ import annotations

import copy
import difflib
import math
from collections.abc import Mapping
from typing import Any

from rnnlm.io import RnnlmError


def _resolve(schema: Mapping, root: Mapping) -> Mapping:
    """Follow a local `$ref` ("#/$defs/name"); the schema uses no other kind."""
    ref = schema.get("$ref")
    if ref is None:
        return schema
    node: Any = root
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _child_schema(schema: Mapping, key: str, root: Mapping) -> Mapping | None:
    properties = schema.get("properties", {})
    if key in properties:
        return _resolve(properties[key], root)
    extra = schema.get("additionalProperties")
    return _resolve(extra, root) if isinstance(extra, Mapping) else None


def _from_text(text: str, kind: str) -> Any:
    """`text` as the schema's `kind`, or `text` itself when it does not read as one (the schema then
    reports it)."""
    word = text.strip()
    if kind == "boolean":
        return {"true": True, "false": False}.get(word.lower(), text)
    if kind in ("integer", "number"):
        try:
            return int(word)
        except ValueError:
            pass
        try:
            value = float(word)
        except ValueError:
            return text
        return int(value) if kind == "integer" and value.is_integer() else value
    if kind == "array":
        return [item.strip() for item in word.strip("[]").split(",") if item.strip()]
    return text


def _walk(value: Any, schema: Mapping, root: Mapping, fix) -> Any:
    """Apply `fix(value, schema)` to every value the schema describes, depth first, filling in defaults."""
    if isinstance(value, dict) and schema.get("type") == "object":
        for key, sub in schema.get("properties", {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
        for key in value:
            child = _child_schema(schema, key, root)
            if child is not None:
                value[key] = _walk(value[key], child, root, fix)
        return value
    return fix(value, schema)


def _coerce(value: Any, schema: Mapping) -> Any:
    kind = schema.get("type")
    if isinstance(value, str):
        return _from_text(value, kind)
    if kind == "string" and isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # `--config text_column=2024` arrives as an int
    return value


def _integral(value: Any, schema: Mapping) -> Any:
    if schema.get("type") == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# More values than any real configuration holds (a sweep of hundreds of models holds thousands). YAML
# aliases let a few lines stand for billions of values (an "alias bomb"); anything that walks or
# prints such a config (JSON Schema's error message does) runs for hours.
MAX_CONFIG_VALUES = 100_000


def _check_size(config: Any) -> None:
    """Count the configuration's values, stopping at MAX_CONFIG_VALUES (shared nodes count each time)."""
    pending, seen = [config], 0
    while pending:
        value = pending.pop()
        seen += 1
        if seen > MAX_CONFIG_VALUES:
            raise RnnlmError(f"the configuration holds more than {MAX_CONFIG_VALUES:,} values (YAML aliases expanding "
                             "into a huge structure?); remove the aliases (& and *) from the config file")
        if isinstance(value, Mapping):
            pending.extend(value.values())
        elif isinstance(value, (list, tuple)):
            pending.extend(value)


def prepare(config: dict, schema: Mapping) -> dict:
    """Before validation: unknown keys refused (naming the nearest valid key), command-line strings
    to the schema's types, defaults filled in (in place);
    NaN and infinity refused wherever they are (the schema's bounds cannot catch NaN); a config of
    more than MAX_CONFIG_VALUES values refused before anything walks it."""
    _check_size(config)
    _check_keys(config, schema, schema)
    _walk(config, schema, schema, _coerce)
    bad = non_finite_numbers(config)
    if bad:
        raise RnnlmError(f"{', '.join(bad)} must be a finite number (NaN and infinity are not settings); fix config.yaml "
                         "or --config")
    return config


def non_finite_numbers(value: Any, path: str = "") -> list[str]:
    """Paths (`models.rnn.clip_norm`) of every NaN or infinite number in `value`: JSON Schema's
    minimum and maximum never reject NaN (every comparison with it is false), and no setting means
    anything at infinity."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [path or "(the value)"]
    if isinstance(value, Mapping):
        return [found for key, item in value.items() for found in non_finite_numbers(item, f"{path}.{key}" if path else str(key))]
    if isinstance(value, (list, tuple)):
        return [found for index, item in enumerate(value) for found in non_finite_numbers(item, f"{path}[{index}]")]
    return []


def _where(path: tuple[str, ...]) -> str:
    if len(path) == 2 and path[0] == "models":
        return f"model {path[1]!r}"
    return ".".join(path) if path else "the top level"


def _check_keys(value: Any, schema: Mapping, root: Mapping, path: tuple[str, ...] = ()) -> None:
    """Raise on the first key that an object closed by `additionalProperties: false` does not define."""
    if not (isinstance(value, dict) and schema.get("type") == "object"):
        return
    known = list(schema.get("properties", {}))
    for key in value:
        child = _child_schema(schema, key, root)
        if child is None and schema.get("additionalProperties") is False:
            nearest = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f"did you mean {nearest[0]}?" if nearest else f"valid keys: {', '.join(known)}"
            raise RnnlmError(f"unknown configuration key {key!r} in {_where(path)}; {hint} "
                             f"(every key: config/README.md)")
        if child is not None:
            _check_keys(value[key], child, root, (*path, str(key)))


def finish(config: dict, schema: Mapping) -> dict:
    """After validation: integral numbers to int where the schema wants integers; cross-key checks."""
    _walk(config, schema, schema, _integral)
    unknown = [name for name in config.get("build_models", []) if name not in config["models"]]
    if unknown:
        raise RnnlmError(f"build_models names {', '.join(unknown)}, which models: does not define "
                         f"(it defines {', '.join(config['models'])}); add them under models: or fix build_models")
    return config


def selected_models(config: Mapping) -> list[str]:
    """The models this run builds: those `build_models` names, or every entry of `models:`."""
    return list(config.get("build_models") or config["models"])
