"""The README's Python example runs as written, on a model trained on the tiny language; its
run-dependent figures are those of the committed benchmarks/readme_figures.json."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from pathlib import Path

from tiny_language import run

README = Path(__file__).resolve().parents[1] / "README.md"
EXAMPLE_PARAMS = "results/models/gru/params.npz"


def python_example() -> str:
    section = README.read_text(encoding="utf-8").split("### From Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_python_example_samples_and_scores(tmp_path, monkeypatch, capsys):
    code = python_example()
    assert len(code.strip().splitlines()) == 3 and EXAMPLE_PARAMS in code
    _, _, out = run(tmp_path, {"epochs": 3}, metadata={"lowercase": True, "normalize_quotes": True})
    # The example's path, relative to a working directory where the model lies there.
    target = tmp_path / EXAMPLE_PARAMS
    target.parent.mkdir(parents=True)
    (out / "params.npz").rename(target)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    sampled = ast.literal_eval(printed[: printed.rindex("]") + 1])  # the list of three sentences, then the perplexity
    assert len(sampled) == 3 and all(isinstance(text, str) and text[0].isupper() for text in sampled)
    assert float(printed[printed.rindex("]") + 1:]) > 1


def load_readme_figures():
    path = README.parent / "benchmarks" / "readme_figures.py"
    spec = importlib.util.spec_from_file_location("readme_figures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_figures_are_the_committed_results():
    """Every generated block of README.md is what benchmarks/readme_figures.py renders from the
    committed JSON: a hand-edited figure, or a JSON re-measured without --update-readme, fails."""
    figures_module = load_readme_figures()
    figures = json.loads(figures_module.FIGURES_JSON.read_text(encoding="utf-8"))
    expected = figures_module.render(figures)
    assert figures_module.readme_blocks(README.read_text(encoding="utf-8")) == expected
    assert set(expected) == {"quickstart", "results", "gradients"}


def test_readme_blocks_are_found_and_replaced():
    figures_module = load_readme_figures()
    text = "a\n<!-- readme_figures:results -->\nold 1.0\n<!-- /readme_figures:results -->\nb\n"
    assert figures_module.readme_blocks(text) == {"results": "old 1.0"}
    updated = figures_module.update_readme(text, {"results": "new 2.0"})
    assert updated == text.replace("old 1.0", "new 2.0") and figures_module.readme_blocks(updated) == {"results": "new 2.0"}
