"""A tiny run of the benchmark's code path (no timing assertions: timings belong in docs/engine.md)."""

import json

import numpy as np

from rnnlm import bench


def test_bench_runs_every_measurement_and_prints_json(capsys):
    argv = ["--vocab-size", "60", "--hidden-size", "8", "--length", "6", "--batch-sizes", "2", "4",
            "--tokens", "48", "--tutorial-sentences", "2", "--repeats", "1", "--clock", "cpu"]
    assert bench.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    results = report["results"]
    expected = {"ours_full_b2", "ours_full_b4", "ours_tutorial_mode_b1_truncate4", "ours_class_b2", "ours_class_b4",
                "tutorial_loop_float64", "tutorial_loop_float32"}
    assert expected <= set(results)
    assert all(entry["tokens_per_s"] > 0 and len(entry["runs"]) == 1 for entry in results.values())
    assert report["settings"]["vocab_size"] == 60
    assert "tutorial_mode_vs_tutorial_loop" in report["ratios"] and "class_vs_full_b4" in report["ratios"]


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
