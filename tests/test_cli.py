"""The `rnnlm` console script: every subcommand end to end on the tiny language, and its errors."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rnnlm.cli import main
from rnnlm.io import load_npz, save_npz
from tiny_language import VOCAB_WORDS, write_tiny_data

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Tiny data plus a model trained on it through `rnnlm train`."""
    directory = tmp_path_factory.mktemp("cli")
    data, vocab = write_tiny_data(directory)
    status = main(["-q", "train", "--data-dir", str(data), "--vocab", str(vocab), "--out-dir", str(directory / "model"),
                   "--device", "cpu", "--hidden-size", "16", "--epochs", "25", "--batch-size", "8", "--no-progress"])
    assert status == 0
    return directory, data, vocab, directory / "model" / "params.npz"


def test_train_writes_params_and_log(workspace):
    directory = workspace[0]
    assert sorted(p.name for p in (directory / "model").iterdir()) == ["params.npz", "train_log.csv"]
    arrays = load_npz(directory / "model" / "params.npz")
    assert json.loads(str(arrays["config_json"]))["hidden_size"] == 16
    assert json.loads(str(arrays["metadata_json"]))["lowercase"] is True


def test_evaluate_prints_metrics(workspace, capsys):
    _, data, vocab, params = workspace
    assert main(["evaluate", "--params", str(params), "--data-dir", str(data), "--vocab", str(vocab),
                 "--device", "cpu"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    test = metrics["splits"]["test"]
    assert test["perplexity"] < test["unigram_perplexity"] / 2


def test_generate_writes_samples(workspace, tmp_path):
    out = tmp_path / "samples.txt"
    assert main(["generate", "--params", str(workspace[3]), "--out", str(out), "--num-sentences", "3",
                 "--min-length", "4", "--beam-width", "2", "--prime", "A", "--device", "cpu"]) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 2 + 3 + 2 + 2
    assert all(line.startswith("A ") and "\ta " in line for line in lines[2:5])  # text, then its tokens


def test_score_ranks_sentences_from_files(workspace, tmp_path, capsys):
    candidates = tmp_path / "candidates.txt"
    candidates.write_text("Ball the today sees cat the\n\nThe cat sees the ball today\n", encoding="utf-8")
    assert main(["score", "--params", str(workspace[3]), "--rank", "--device", "cpu", str(candidates)]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert rows[0] == ["log_prob", "perplexity", "tokens", "unknown", "sentence"]
    assert [row[4] for row in rows[1:-1]] == ["the cat sees the ball today", "ball the today sees cat the"]
    assert float(rows[1][0]) > float(rows[2][0])
    total = float(rows[1][0]) + float(rows[2][0])
    assert rows[-1] == [f"# total: log_prob {total:.4f}, perplexity {math.exp(-total / 14):.4f}, 14 tokens, "
                        "0 unknown words, 2 sentences"]


def test_score_reads_standard_input_through_the_console_script(workspace):
    result = subprocess.run([sys.executable, "-m", "rnnlm.cli", "score", "--params", str(workspace[3]), "--device",
                             "cpu", "--pretokenized"], input="the zebra sees a tree\n", capture_output=True, text=True,
                            cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].endswith("\t6\t1\tthe zebra sees a tree")  # zebra is unknown


@pytest.mark.parametrize("damage", ["truncated", "pickled", "nan", "not-there"])
def test_bad_params_files_exit_2_with_a_clear_message(workspace, tmp_path, capsys, damage):
    params = tmp_path / "params.npz"
    arrays = load_npz(workspace[3])
    if damage == "truncated":
        params.write_bytes(workspace[3].read_bytes()[:1000])
    elif damage == "pickled":
        with open(params, "wb") as handle:
            np.savez(handle, **arrays, vocab_objects=np.array(VOCAB_WORDS, dtype=object))
    elif damage == "nan":
        arrays["V"] = np.full_like(arrays["V"], np.nan)
        save_npz(params, **arrays)
    expected = {"truncated": "not a readable .npz archive", "pickled": "contains pickled objects",
                "nan": "parameter V holds NaN", "not-there": "file not found"}[damage]
    for command in (["score"], ["generate"]):
        assert main([*command, "--params", str(params), "--device", "cpu"]) == 2
        error = capsys.readouterr().err
        assert error.startswith(f"rnnlm {command[0]}: error: ") and expected in error


def test_mismatched_vocabulary_exits_2(workspace, tmp_path, capsys):
    _, data, _, params = workspace
    other = tmp_path / "vocab.tsv"
    other.write_text("id\tword\tcount\n" + "".join(f"{i}\t{w}\t1\n" for i, w in enumerate(VOCAB_WORDS[:-1])))
    assert main(["evaluate", "--params", str(params), "--data-dir", str(data), "--vocab", str(other),
                 "--device", "cpu"]) == 2
    assert "vocabulary mismatch" in capsys.readouterr().err


def test_train_refuses_invalid_settings(workspace, tmp_path, capsys):
    _, data, vocab, _ = workspace
    base = ["train", "--data-dir", str(data), "--vocab", str(vocab), "--out-dir", str(tmp_path), "--device", "cpu"]
    assert main([*base, "--hidden-size", "0"]) == 2
    assert "hidden_size must be an integer >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main([*base, "--activation", "sigmoid"])
    assert exit_.value.code == 2 and "invalid choice: 'sigmoid'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_gradcheck_is_delegated(capsys):
    assert main(["-q", "gradcheck", "--hidden-size", "3", "--vocab-size", "7", "--lengths", "3", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["passed"] is True


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    listing = capsys.readouterr().out
    for command in ("train", "evaluate", "generate", "score", "gradcheck", "bench"):
        assert command in listing


def test_boolean_settings_are_flags():
    from rnnlm.cli import build_parser

    base = ["train", "--data-dir", "d", "--vocab", "v", "--out-dir", "o"]
    assert build_parser().parse_args(base).averaging is False
    assert build_parser().parse_args([*base, "--averaging"]).averaging is True
    assert build_parser().parse_args([*base, "--averaging", "--no-averaging"]).averaging is False
    with pytest.raises(SystemExit):
        build_parser().parse_args([*base, "--averaging", "true"])


def test_quiet_is_accepted_before_and_after_the_subcommand():
    from rnnlm.cli import build_parser

    score = ["score", "--params", "p.npz"]
    assert build_parser().parse_args(score).quiet is False
    assert build_parser().parse_args(["-q", *score]).quiet is True
    assert build_parser().parse_args([*score, "-q"]).quiet is True
    assert build_parser().parse_args([*score, "--quiet"]).quiet is True


def test_quiet_after_a_delegated_subcommand(capsys):
    assert main(["gradcheck", "-q", "--hidden-size", "3", "--vocab-size", "7", "--lengths", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["passed"] is True


def test_help_lists_choices_and_describes_every_subcommand(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    listing = " ".join(capsys.readouterr().out.split())  # argparse wraps to the terminal's width
    assert "finite differences" in listing and "tokens per second" in listing
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    options = capsys.readouterr().out
    for choices in ("{rnn,gru,lstm}", "{tanh,relu}", "{full,class}", "{sgd,adam}", "--averaging, --no-averaging"):
        assert choices in options


@pytest.mark.parametrize("setting, value, message", [
    ("--seed", "-1", "seed must be an integer >= 0, got -1"),
    ("--num-sentences", "0", "num_sentences must be an integer 1..100000, got 0"),
    ("--num-sentences", "-3", "num_sentences must be an integer 1..100000, got -3"),
    ("--beam-width", "-1", "beam_width must be an integer 0..1000 (0: no beam search), got -1"),
    ("--temperature", "0", "temperature must be a finite positive number"),
    ("--min-length", "9", "min_length (9) exceeds max_length (5)"),
])
def test_bad_generate_settings_exit_2_with_one_line(workspace, tmp_path, capsys, setting, value, message):
    out = tmp_path / "samples.txt"
    argv = ["generate", "--params", str(workspace[3]), "--device", "cpu", "--max-length", "5", "--out", str(out),
            setting, value]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith("rnnlm generate: error: ") and message in error and error.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize("below", [False, True])
def test_train_refuses_an_output_directory_that_is_a_file_before_training(workspace, tmp_path, capsys, monkeypatch,
                                                                           below):
    import rnnlm.train

    _, data, vocab, _ = workspace
    monkeypatch.setattr(rnnlm.train, "train", lambda *args, **kwargs: pytest.fail("training started"))
    blocker = tmp_path / "passwd"
    blocker.write_text("root:x:0:0\n")
    out = blocker / "model" if below else blocker
    assert main(["train", "--data-dir", str(data), "--vocab", str(vocab), "--out-dir", str(out), "--device", "cpu"]) == 2
    assert f"{blocker} is a file, not a directory" in capsys.readouterr().err
    assert blocker.read_text() == "root:x:0:0\n"


def test_out_file_in_a_missing_place_fails_before_work(workspace, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["generate", "--params", str(workspace[3]), "--device", "cpu", "--out", str(blocker / "s.txt")]) == 2
    assert "is a file, not a directory" in capsys.readouterr().err
    assert main(["generate", "--params", str(workspace[3]), "--device", "cpu", "--out", str(tmp_path)]) == 2
    assert "is a directory; give a file name" in capsys.readouterr().err


def test_a_text_file_as_params_is_named_as_such(tmp_path, capsys):
    text = tmp_path / "params.npz"
    text.write_text("the cat sees the ball\n")
    assert main(["generate", "--params", str(text), "--device", "cpu"]) == 2
    error = capsys.readouterr().err
    assert "not an .npz parameters file" in error and "pickled" not in error


def test_errors_name_the_setting_not_config_yaml(workspace, tmp_path, capsys):
    _, data, vocab, _ = workspace
    assert main(["train", "--data-dir", str(data), "--vocab", str(vocab), "--out-dir", str(tmp_path / "m"),
                 "--device", "cpu", "--learning-rate", "0", "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert "learning_rate must be positive, got 0" in error and "config.yaml" not in error
    assert not (tmp_path / "m").exists()


def test_threads_limit_the_blas_pool(monkeypatch):
    from threadpoolctl import threadpool_info

    import rnnlm.cli

    seen = []
    monkeypatch.setattr(rnnlm.cli, "_evaluate", lambda args: seen.append(
        {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}))
    assert main(["evaluate", "--params", "p.npz"]) == 0
    assert main(["evaluate", "--params", "p.npz", "--threads", "2"]) == 0
    assert seen == [{1}, {2}]
    assert main(["evaluate", "--params", "p.npz", "--threads", "0"]) == 2


def test_bench_threads_mean_the_same_blas_cap(monkeypatch, capsys):
    from threadpoolctl import threadpool_info

    import rnnlm.bench

    seen = []
    monkeypatch.setattr(rnnlm.bench, "run", lambda args: seen.append(
        {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}) or {})
    assert main(["bench", "--threads", "1", "--config", ""]) == 0
    assert seen == [{1}]
    assert main(["bench", "--threads", "0", "--config", ""]) == 2
    assert capsys.readouterr().err.strip() == "rnnlm bench: error: --threads must be at least 1, got 0"


@pytest.mark.parametrize("argv, message", [
    (["generate", "--params", "p.npz", "--temperature", "abc"],
     "rnnlm generate: error: argument --temperature: invalid float value: 'abc'"),
    (["train"], "rnnlm train: error: the following arguments are required: --out-dir"),
    (["gradcheck", "--cell", "foo"], "rnnlm gradcheck: error: argument --cell: invalid choice: 'foo'"),
    (["bench", "--threads", "abc"], "rnnlm bench: error: argument --threads: invalid int value: 'abc'"),
])
def test_bad_option_values_are_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith(message) and error.count("\n") == 1 and "usage:" not in error


@pytest.mark.parametrize("flags, shown", [([], False), (["-v"], True), (["--verbose"], True)])
def test_the_backend_line_only_with_verbose(flags, shown):
    done = subprocess.run([sys.executable, "-m", "rnnlm.cli", *flags, "gradcheck", "--hidden-size", "3",
                           "--vocab-size", "5", "--lengths", "2"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert ("backend: numpy (device=cpu)" in done.stderr) is shown
