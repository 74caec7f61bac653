"""The README's Python example runs as written, on a model trained on the tiny language."""

from __future__ import annotations

import ast
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
