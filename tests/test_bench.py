"""A tiny run of the benchmark's code path (no timing assertions: timings belong in docs/engine.md)."""

import json

import numpy as np
import pytest

from rnnlm import bench


@pytest.mark.slow
def test_bench_runs_every_measurement_and_prints_json(capsys):
    argv = ["--vocab-size", "60", "--hidden-size", "8", "--length", "6", "--batch-sizes", "2", "4",
            "--tokens", "48", "--tutorial-sentences", "2", "--repeats", "1", "--clock", "cpu", "--config", ""]
    assert bench.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    results = report["results"]
    expected = {"ours_full_b2", "ours_full_b4", "ours_tutorial_mode_b1_truncate4", "ours_class_b2", "ours_class_b4",
                "tutorial_loop_float64", "tutorial_loop_float32"}
    assert expected <= set(results)
    assert all(entry["tokens_per_s"] > 0 and len(entry["runs"]) == 1 for entry in results.values())
    assert report["settings"]["vocab_size"] == 60
    assert "tutorial_mode_vs_tutorial_loop" in report["ratios"] and "class_vs_full_b4" in report["ratios"]


def test_bench_times_each_configured_model_with_its_own_settings(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("models:\n  small: {hidden_size: 6, batch_size: 4, clip_norm: 0.5, dropout: 0.3}\n"
                      "  gated: {cell: gru, hidden_size: 5, output: class, optimizer: adam, learning_rate: 0.002}\n",
                      encoding="utf-8")
    argv = ["--vocab-size", "40", "--hidden-size", "8", "--length", "5", "--batch-sizes", "2", "--tokens", "40",
            "--tutorial-sentences", "1", "--repeats", "1", "--clock", "cpu", "--skip-torch", "--skip-class",
            "--config", str(config), "--model-batch-sizes", "3"]
    assert bench.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    for name in ("small", "gated"):
        assert report["results"][f"model_{name}"]["tokens_per_s"] > 0
        assert report["results"][f"model_{name}_b3"]["settings"]["batch_size"] == 3  # the same model at B = 3
        assert report["results"][f"model_{name}_reference_full_b32"]["tokens_per_s"] > 0
        assert report["ratios"][f"model_{name}_vs_full_b32"] > 0
    assert report["results"]["model_small"]["settings"]["dropout"] == 0.3


def test_tutorial_loop_learns_its_sentence():
    rng = np.random.default_rng(0)
    loop = bench.TutorialLoop(20, 6, truncate=4, rng=rng)
    sentence = bench.zipf_sentences(rng, 20, 1, 8)[0]
    x, y = sentence[:-1], sentence[1:]

    def loss():
        s, total = np.zeros(6, dtype=np.float32), 0.0
        for t in range(len(x)):
            s = np.tanh(loop.U[:, x[t]] + loop.W.dot(s))
            scores = loop.V.dot(s)
            total -= scores[y[t]] - np.log(np.exp(scores).sum())
        return total

    before = loss()
    for _ in range(20):
        loop.sgd_step(x, y, 0.1)
    assert loss() < before
