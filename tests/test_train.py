"""Training: artifacts, determinism, resume after SIGKILL, schedule, early stopping, divergence."""

from __future__ import annotations

import csv
import json
import math
import re
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

import rnnlm.train as train_module
from rnnlm.train import Interrupted
from rnnlm import update
from rnnlm.backend import get_backend
from rnnlm.data import Split
from rnnlm.io import RnnlmError, load_npz
from rnnlm.model import RNNLM
from rnnlm.progress import LOG_COLUMNS, TIMING_COLUMNS
from rnnlm.train_config import TrainConfig, split_hyperparameters
from tiny_language import FAST, VOCAB_WORDS, run, tiny_splits, write_tiny_data

REPO = Path(__file__).resolve().parents[1]
def read_log(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows]


def test_training_learns_and_writes_a_self_contained_params_file(tmp_path):
    state, _, out = run(tmp_path, {"epochs": 6})
    rows = read_log(out / "train_log.csv")
    assert tuple(rows[0]) == LOG_COLUMNS
    assert [int(r["epoch"]) for r in rows] == list(range(7))
    assert rows[0]["train_loss"] == "" and int(rows[-1]["examples_seen"]) == 6 * 120
    valid = [float(r["valid_loss"]) for r in rows]
    assert valid[0] == pytest.approx(math.log(len(VOCAB_WORDS)), abs=0.2)
    assert valid[-1] < valid[0] - 0.5
    assert not (out / "checkpoint.npz").exists()  # deleted once the run is complete

    model, words, metadata = RNNLM.load(out / "params.npz", get_backend("cpu"))
    assert words == VOCAB_WORDS
    assert metadata["training"]["best_epoch"] == state.best_epoch
    assert metadata["training"]["best_loss"] == pytest.approx(min(valid))


def test_same_seed_gives_byte_identical_params_and_another_seed_does_not(tmp_path):
    first = run(tmp_path, name="a")[2] / "params.npz"
    second = run(tmp_path, name="b")[2] / "params.npz"
    other = run(tmp_path, {"seed": 4}, name="c")[2] / "params.npz"
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other.read_bytes()


def test_loss_rise_halves_the_learning_rate_and_patience_stops_early(tmp_path, monkeypatch):
    after_one_epoch = load_npz(run(tmp_path, {"epochs": 1}, name="one")[2] / "params.npz")
    # Measured losses: before training, then after epochs 1, 2, ...
    scripted = iter([3.0, 2.5, 2.7, 2.6, 2.8, 2.9, 2.0])
    monkeypatch.setattr(train_module, "mean_loss", lambda model, split: next(scripted))
    state, _, out = run(tmp_path, {"epochs": 10, "patience": 3})
    rows = read_log(out / "train_log.csv")
    assert [float(r["learning_rate"]) for r in rows] == [0.5, 0.5, 0.5, 0.25, 0.25]
    assert state.stopped_early and state.epoch == 4 and state.best_epoch == 1
    kept = load_npz(out / "params.npz")
    for name in ("U", "W", "V", "b_h", "b_y"):
        np.testing.assert_array_equal(kept[name], after_one_epoch[name])


def test_evaluate_every_leaves_unmeasured_epochs_blank(tmp_path):
    _, _, out = run(tmp_path, {"epochs": 5, "evaluate_every": 2})
    measured = [r["valid_loss"] != "" for r in read_log(out / "train_log.csv")]
    assert measured == [True, False, True, False, True, True]  # epoch 0, 2, 4 and the last one


def test_without_validation_split_the_training_loss_drives_the_schedule(tmp_path):
    splits = tiny_splits()
    empty = Split(np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(1, np.int64))
    state, _, out = run(tmp_path, splits={**splits, "valid": empty})
    assert all(r["valid_loss"] == "" for r in read_log(out / "train_log.csv"))
    assert math.isfinite(state.best_loss)


def test_gradient_is_clipped_to_clip_norm():
    splits = tiny_splits()
    model_config, _ = split_hyperparameters(FAST, len(VOCAB_WORDS), "float64")
    model = RNNLM(model_config, get_backend("cpu"), seed=0)
    x, y, mask = splits["train"].batch(np.arange(16))
    loss, count, grads = model.loss_and_grads(x, y, mask)
    _, norm = update._loss_and_gradient_norm(model, loss, grads, count)
    before = {k: v.copy() for k, v in model.params.items()}
    *_, stepped_norm = update.sgd_step(model, x, y, mask, learning_rate=2.0, clip_norm=norm / 10)
    assert stepped_norm == pytest.approx(norm, rel=1e-12)
    step = math.sqrt(sum(float(((model.params[k] - before[k]) ** 2).sum()) for k in before))
    assert step == pytest.approx(2.0 * norm / 10, rel=1e-9)


@pytest.mark.parametrize("hyper", [{}, {"embedding_size": 12, "tie_embeddings": True, "cell": "gru"}])
def test_weight_decay_shrinks_the_weight_matrices_after_the_update_and_not_the_biases(hyper):
    splits = tiny_splits()
    model_config, _ = split_hyperparameters({**FAST, **hyper}, len(VOCAB_WORDS), "float64")
    decayed, plain = (RNNLM(model_config, get_backend("cpu"), seed=0) for _ in range(2))
    x, y, mask = splits["train"].batch(np.arange(16))
    update.sgd_step(decayed, x, y, mask, learning_rate=0.5, clip_norm=1.0, weight_decay=0.1)
    update.sgd_step(plain, x, y, mask, learning_rate=0.5, clip_norm=1.0)
    matrices = [name for name, value in plain.params.items() if value.ndim >= 2]
    assert matrices and len(matrices) < len(plain.params)  # weights decay, biases are kept
    for name, value in plain.params.items():
        factor = 0.95 if value.ndim >= 2 else 1.0
        np.testing.assert_allclose(decayed.params[name], factor * value, rtol=1e-12, err_msg=name)


@pytest.mark.parametrize("schedule, decay", [({}, 0.2), ({"optimizer": "adam", "learning_rate": 0.01}, 10.0)])
def test_weight_decay_regularises_a_run_and_zero_leaves_it_byte_identical(tmp_path, schedule, decay):
    plain = run(tmp_path, {"epochs": 3, **schedule}, name="plain")[1]
    zero = run(tmp_path, {"epochs": 3, **schedule, "weight_decay": 0.0}, name="zero")[1]
    decayed = run(tmp_path, {"epochs": 3, **schedule, "weight_decay": decay}, name="decayed")[1]
    for name, value in plain.params.items():
        assert np.array_equal(zero.params[name], value), name
    norms = [sum(float((m.params[k] ** 2).sum()) for k in m.params if m.params[k].ndim >= 2) for m in (plain, decayed)]
    assert norms[1] < 0.9 * norms[0]
    with pytest.raises(RnnlmError, match="weight_decay"):
        TrainConfig(learning_rate=2.0, weight_decay=0.5)


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    original = RNNLM.loss_and_grads
    calls = {"n": 0}

    def poisoned(self, x, y, mask, **options):
        calls["n"] += 1
        loss, count, grads = original(self, x, y, mask, **options)
        return (float("nan") if calls["n"] > 2 * 15 else loss), count, grads  # 15 batches an epoch

    monkeypatch.setattr(RNNLM, "loss_and_grads", poisoned)
    with pytest.raises(RnnlmError, match=r"diverged in epoch 3.*lower learning_rate.*checkpoint after epoch 2"):
        run(tmp_path, {"epochs": 5})
    out = tmp_path / "m"
    assert not (out / "params.npz").exists() and not (out / "train_log.csv").exists()
    checkpoint = load_npz(out / "checkpoint.npz")
    assert json.loads(str(checkpoint["state_json"]))["epoch"] == 2
    assert all(np.isfinite(v).all() for k, v in checkpoint.items() if k.startswith(("param.", "best.")))


def test_exploding_loss_is_caught(tmp_path):
    with pytest.raises(RnnlmError, match="diverged in epoch 1.*no checkpoint had been written yet") as caught:
        run(tmp_path, {"learning_rate": 200.0, "clip_norm": 0.0})
    assert "lower learning_rate (now 200) or turn on gradient clipping (clip_norm: 0.5)" in str(caught.value)


@pytest.mark.parametrize("hyper, advice, not_advised", [
    ({"clip_norm": 0.5}, "lower learning_rate (now 2) or clip_norm (now 0.5): a clipped SGD step", "clipping"),
    ({"clip_norm": 0.0}, "turn on gradient clipping (clip_norm: 0.5)", "or clip_norm (now"),
    ({"optimizer": "adam", "learning_rate": 0.5}, "lower learning_rate (now 0.5; Adam usually needs 0.001", "clip"),
    ({"activation": "relu", "clip_norm": 1.0}, "or use activation: tanh", "turn on"),
])
def test_divergence_advice_fits_the_settings(tmp_path, monkeypatch, hyper, advice, not_advised):
    """Never advise turning on clipping when it is on (the default)."""
    monkeypatch.setattr(RNNLM, "loss_and_grads", lambda self, x, y, mask, **options: (float("nan"), 1, {}))
    with pytest.raises(RnnlmError, match="diverged in epoch 1") as caught:
        run(tmp_path, {"learning_rate": 2.0, **hyper})
    assert advice in str(caught.value) and not_advised not in str(caught.value)


def test_checkpoint_of_other_settings_is_not_resumed(tmp_path, monkeypatch):
    def interrupt_after_first_checkpoint(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt

    real_save = train_module.save_checkpoint
    monkeypatch.setattr(train_module, "save_checkpoint", interrupt_after_first_checkpoint)
    with pytest.raises(Interrupted, match=r"interrupted \(Ctrl-C\) after 1 of \d+ epochs; "):
        run(tmp_path, {"learning_rate": 0.3}, name="shared")
    monkeypatch.setattr(train_module, "save_checkpoint", real_save)
    assert (tmp_path / "shared" / "checkpoint.npz").exists()
    run(tmp_path, name="shared")  # learning rate 0.5: must start afresh
    run(tmp_path, name="fresh")
    assert (tmp_path / "shared" / "params.npz").read_bytes() == (tmp_path / "fresh" / "params.npz").read_bytes()


DRIVER = textwrap.dedent("""
    import sys, time
    from rnnlm.model import RNNLM
    from rnnlm.cli import main

    if sys.argv[1] == "slow":
        # Slow each update down so the parent's SIGKILL lands in the middle of training.
        original = RNNLM.loss_and_grads
        def slowed(self, *args, **options):
            time.sleep(0.02)
            return original(self, *args, **options)
        RNNLM.loss_and_grads = slowed
    sys.exit(main(["train", *sys.argv[2:]]))
""")


# Adam's moments and the dropout masks are training state too: a resume must restore the former
# and redraw the latter exactly. With epoch_tokens, where the last epoch stopped in its pass is too.
# The toolkit (tied / embedding table, stacked layers, locked dropout) resumes the same way.
@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["--optimizer", "adam", "--learning-rate", "0.01", "--dropout", "0.3",
                                        "--input-dropout", "0.2"],
                                   ["--epoch-tokens", "250", "--epochs", "9", "--valid-tokens", "60"],
                                   ["--cell", "gru", "--embedding-size", "12", "--tie-embeddings", "--num-layers",
                                    "2", "--layer-dropout", "0.3", "--locked-dropout",
                                    "--dropout", "0.3", "--output", "class"],
                                   ["--optimizer", "adam", "--learning-rate", "0.01", "--embedding-size", "6",
                                    "--num-layers", "2", "--input-dropout", "0.2"]],
                         ids=["sgd", "adam-dropout", "epoch-tokens", "tied-stacked-sgd", "embedding-stacked-adam"])
def test_resume_after_sigkill_ends_byte_identical_to_an_uninterrupted_run(tmp_path, extra):
    data, vocab = write_tiny_data(tmp_path)
    options = ["--data-dir", str(data), "--vocab", str(vocab), "--device", "cpu", "--epochs", "6", "--hidden-size",
               "12", "--batch-size", "8", "--seed", "3", "--no-progress", *extra]
    epochs = int(extra[extra.index("--epochs") + 1]) if "--epochs" in extra else 6
    kill_then_resume(tmp_path, options, epochs)


def kill_then_resume(tmp_path: Path, options: list[str], epochs: int) -> dict:
    """Train with `options` into tmp_path/reference uninterrupted, and into tmp_path/resumed killed by
    SIGKILL after its first checkpoint, then resumed; assert that the resumed run ends byte-identical
    (parameters, training log without its timing columns). Returns the checkpoint's arrays at the kill."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def arguments(out: str) -> list[str]:
        return [*options, "--out-dir", str(tmp_path / out)]

    reference = subprocess.run([sys.executable, str(driver), "fast", *arguments("reference")], env=env,
                               capture_output=True, text=True, timeout=120)
    assert reference.returncode == 0, reference.stderr

    victim = subprocess.Popen([sys.executable, str(driver), "slow", *arguments("resumed")], env=env,
                              stderr=subprocess.DEVNULL)
    checkpoint = tmp_path / "resumed" / "checkpoint.npz"
    deadline = time.monotonic() + 60
    while not checkpoint.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.1)  # into the next epoch
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=10) == -signal.SIGKILL
    assert checkpoint.exists() and not (tmp_path / "resumed" / "params.npz").exists()
    arrays = load_npz(checkpoint)
    epochs_done = json.loads(str(arrays["state_json"]))["epoch"]
    assert 1 <= epochs_done < epochs

    resumed = subprocess.run([sys.executable, str(driver), "fast", *arguments("resumed")], env=env,
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from {checkpoint} after epoch {epochs_done}" in resumed.stderr
    assert (tmp_path / "resumed" / "params.npz").read_bytes() == (tmp_path / "reference" / "params.npz").read_bytes()
    assert without_timing(read_log(tmp_path / "resumed" / "train_log.csv")) == \
        without_timing(read_log(tmp_path / "reference" / "train_log.csv"))
    return arrays


def recorded_batches(monkeypatch) -> list[tuple[np.ndarray, int]]:
    """(x, predicted tokens) of every update from now on."""
    seen = []
    original = train_module.sgd_step

    def recording(model, x, y, mask, *args, **kwargs):
        seen.append((x.copy(), int(mask.sum())))
        return original(model, x, y, mask, *args, **kwargs)

    monkeypatch.setattr(train_module, "sgd_step", recording)
    return seen


def test_epoch_tokens_ends_epochs_at_the_budget_and_continues_the_shuffled_passes(tmp_path, monkeypatch):
    """Budget epochs take the same stream of batches as whole passes (every sentence once per pass,
    in the order of (seed, pass)): each epoch continues where the last one stopped and ends with the
    batch that brings it to the budget."""
    whole = recorded_batches(monkeypatch)
    run(tmp_path, {"epochs": 2, "patience": 9}, name="passes")
    monkeypatch.undo()
    bounded = recorded_batches(monkeypatch)
    budget = 250
    state, _, out = run(tmp_path, {"epochs": 10, "epoch_tokens": budget, "patience": 20}, name="bounded")
    assert len(bounded) > len(whole) and state.data_pass >= 3  # the comparison spans two pass boundaries
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(whole, bounded))

    rows = read_log(out / "train_log.csv")
    assert len(rows) == 11
    batch_ends = np.cumsum([x.shape[1] for x, _ in bounded])
    last_batches = np.searchsorted(batch_ends, [int(row["examples_seen"]) for row in rows[1:]])
    assert np.array_equal(batch_ends[last_batches], [int(row["examples_seen"]) for row in rows[1:]])
    tokens = [count for _, count in bounded]
    first = 0
    for last in last_batches:
        epoch = tokens[first : last + 1]
        assert sum(epoch) >= budget > sum(epoch) - epoch[-1]
        first = last + 1


def test_valid_tokens_measures_the_same_bounded_subset_every_time(tmp_path, monkeypatch):
    measured = []
    original = train_module.mean_loss

    def recording(model, split, *args, **kwargs):
        measured.append(split)
        return original(model, split, *args, **kwargs)

    monkeypatch.setattr(train_module, "mean_loss", recording)
    valid = tiny_splits(valid=60)["valid"]
    sentences = {tuple(valid.y[a:b]) for a, b in zip(valid.offsets[:-1], valid.offsets[1:])}
    state, _, _ = run(tmp_path, {"epochs": 3, "valid_tokens": 100}, splits={**tiny_splits(), "valid": valid})
    assert len(measured) == 4
    first = measured[0]
    assert 100 <= first.num_tokens < 100 + first.lengths.max() and first.num_tokens < valid.num_tokens
    assert {tuple(first.y[a:b]) for a, b in zip(first.offsets[:-1], first.offsets[1:])} <= sentences
    assert all(np.array_equal(m.x, first.x) and np.array_equal(m.offsets, first.offsets) for m in measured)
    other_seed = train_module.measurement_subset(valid, 100, seed=4)
    assert not np.array_equal(other_seed.y, first.y)

    measured.clear()
    run(tmp_path, {"epochs": 1}, splits={**tiny_splits(), "valid": valid}, name="all")
    assert all(m is valid for m in measured)


def test_checkpoint_minutes_adds_checkpoints_on_a_timer(tmp_path, monkeypatch):
    """With a clock that moves 40 s per epoch and checkpoint_minutes 1, every second epoch ends a
    minute or more after the last checkpoint; checkpoint_every alone would save after the last only."""
    saved = []
    real_save = train_module.save_checkpoint

    def recording(path, model, best, state, *args, **kwargs):
        saved.append(state.epoch)
        return real_save(path, model, best, state, *args, **kwargs)

    monkeypatch.setattr(train_module, "save_checkpoint", recording)
    seconds = iter(range(0, 10_000, 40))
    monkeypatch.setattr(train_module, "checkpoint_clock", lambda: next(seconds))
    run(tmp_path, {"epochs": 5, "checkpoint_every": 100, "checkpoint_minutes": 1, "patience": 9}, name="timed")
    assert saved == [2, 4, 5]
    saved.clear()
    run(tmp_path, {"epochs": 5, "checkpoint_every": 100, "patience": 9}, name="untimed")
    assert saved == [5]


def test_unknown_and_invalid_settings_are_refused():
    with pytest.raises(RnnlmError, match="unknown model settings.*'hiden_size'"):
        split_hyperparameters({"hiden_size": 3}, 10, "float32")
    with pytest.raises(RnnlmError, match="batch_size must be positive"):
        TrainConfig(batch_size=0)
    with pytest.raises(RnnlmError, match="optimizer must be one of sgd, adam, got 'adagrad'"):
        TrainConfig(optimizer="adagrad")
    with pytest.raises(RnnlmError, match="lr_decay must be in"):
        TrainConfig(lr_decay=0)
    with pytest.raises(RnnlmError, match="epoch_tokens must be a whole number >= 0"):
        TrainConfig(epoch_tokens=-5)
    with pytest.raises(RnnlmError, match="valid_tokens must be a whole number >= 0"):
        TrainConfig(valid_tokens=2.5)
    with pytest.raises(RnnlmError, match="checkpoint_minutes must be a number >= 0"):
        TrainConfig(checkpoint_minutes=-1)
    with pytest.raises(RnnlmError, match="dropout must be a number in \\[0, 1\\)"):
        split_hyperparameters({"dropout": 1.0}, 10, "float32")


@pytest.mark.parametrize("hyper", [{"optimizer": "adam", "learning_rate": 0.01},
                                   {"dropout": 0.3, "input_dropout": 0.2, "learning_rate": 1.0},
                                   {"optimizer": "adam", "learning_rate": 0.01, "dropout": 0.3, "cell": "gru"}])
def test_adam_and_dropout_learn(tmp_path, hyper):
    state, _, _ = run(tmp_path, {**hyper, "epochs": 6})
    valid = [row["valid_loss"] for row in state.rows]
    assert valid[-1] < valid[0] - 0.5, valid


def test_dropout_masks_differ_between_batches_and_epochs(tmp_path, monkeypatch):
    drawn = []
    original = RNNLM.dropout_masks

    def recording(self, rng, shape):
        masks = original(self, rng, shape)
        drawn.append(masks.hidden.copy())
        return masks

    monkeypatch.setattr(RNNLM, "dropout_masks", recording)
    run(tmp_path, {"dropout": 0.5, "epochs": 2, "batch_size": 120})  # one batch per epoch
    assert len(drawn) == 2 and drawn[0].shape == drawn[1].shape
    assert not np.array_equal(drawn[0], drawn[1])


def test_lr_decay_sets_the_factor_applied_when_the_loss_rises(tmp_path, monkeypatch):
    losses = iter([3.0, 2.0, 2.5, 2.4, 2.6])
    monkeypatch.setattr(train_module, "mean_loss", lambda *args, **kwargs: next(losses))
    state, _, _ = run(tmp_path, {"epochs": 4, "learning_rate": 1.0, "lr_decay": 0.25, "patience": 5})
    assert [row["learning_rate"] for row in state.rows] == [1.0, 1.0, 1.0, 0.25, 0.25]


def test_defaults_match_the_config_schema():
    from rnnlm.generate import GenerateConfig
    from rnnlm.model import ModelConfig

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    model_defaults = {k: v["default"] for k, v in schema["$defs"]["model"]["properties"].items()}
    code_defaults = {f: getattr(TrainConfig(), f) for f in TrainConfig.__dataclass_fields__}
    code_defaults |= {f: getattr(ModelConfig(vocab_size=10), f) for f in model_defaults if f not in code_defaults}
    assert model_defaults == code_defaults
    generate_defaults = {k: v["default"] for k, v in schema["properties"]["generate"]["properties"].items()}
    assert generate_defaults == {f: getattr(GenerateConfig(), f) for f in GenerateConfig.__dataclass_fields__}


def test_averaging_starts_at_the_first_rise_and_keeps_the_mean_of_the_later_iterates(tmp_path, monkeypatch):
    """With `averaging`, the first rise of the loss starts a running mean of the parameters (the
    learning rate stays); later measurements and the written parameters are that mean."""
    def scripted(values):
        losses = iter(values)
        return lambda *args, **kwargs: next(losses)

    iterates = []
    original_step = train_module.sgd_step

    def recording_step(model, *args, **kwargs):
        result = original_step(model, *args, **kwargs)
        iterates.append({name: np.array(value) for name, value in model.params.items()})
        return result

    # Reference trajectory: the same updates (no decay at the rise), every iterate recorded.
    monkeypatch.setattr(train_module, "sgd_step", recording_step)
    monkeypatch.setattr(train_module, "mean_loss", scripted([3.0, 2.5, 2.7, 2.6, 2.0]))
    run(tmp_path, {"epochs": 4, "lr_decay": 1.0, "patience": 5}, name="reference")
    per_epoch = len(iterates) // 4
    # The average starts from the parameters after epoch 2 and takes every update after them.
    samples = iterates[2 * per_epoch - 1:]
    expected = {name: np.mean([sample[name] for sample in samples], axis=0) for name in samples[0]}

    monkeypatch.setattr(train_module, "mean_loss", scripted([3.0, 2.5, 2.7, 2.6, 2.0]))
    state, _, out = run(tmp_path, {"epochs": 4, "averaging": True, "patience": 5}, name="averaged")
    assert [row["learning_rate"] for row in state.rows] == [0.5] * 5  # never decayed
    # The log marks the epochs trained with the average running: after the rise measured in epoch 2.
    assert [row["averaged"] for row in read_log(out / "train_log.csv")] == ["0", "0", "0", "1", "1"]
    assert state.best_epoch == 4
    written = load_npz(out / "params.npz")
    for name, value in expected.items():
        np.testing.assert_allclose(written[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
    assert not np.allclose(written["W"], iterates[-1]["W"])


def test_a_checkpoint_carries_the_parameter_average(tmp_path):
    from rnnlm.optim import ParameterAverage

    model_config, _ = split_hyperparameters(FAST, len(VOCAB_WORDS), "float32")
    model = RNNLM(model_config, get_backend("cpu"), seed=0)
    average = ParameterAverage(model.params, np)
    for value in model.params.values():
        value += 1.0
    average.add(model.params)
    state = train_module.TrainState(learning_rate=0.5, epoch=2)
    best = {name: value.copy() for name, value in model.params.items()}
    train_module.save_checkpoint(tmp_path / "c.npz", model, best, state, "run", average=average)
    fresh = RNNLM(model_config, get_backend("cpu"), seed=0)
    _, restored_state, restored = train_module.load_checkpoint(tmp_path / "c.npz", fresh, "run")
    assert restored_state.averaged_updates == 2 and restored.count == 2
    for name, value in average.mean.items():
        np.testing.assert_array_equal(restored.mean[name], value)
    train_module.save_checkpoint(tmp_path / "d.npz", model, best, state, "run")
    assert train_module.load_checkpoint(tmp_path / "d.npz", fresh, "run")[2] is None


@pytest.mark.slow
def test_ctrl_c_ends_in_one_line_naming_the_checkpoint_and_the_command_that_resumes(tmp_path):
    data, vocab = write_tiny_data(tmp_path)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = tmp_path / "model"
    arguments = ["--data-dir", str(data), "--vocab", str(vocab), "--out-dir", str(out), "--device", "cpu",
                 "--epochs", "200", "--patience", "1000", "--hidden-size", "12", "--batch-size", "8", "--no-progress"]
    # A shell's background job (CI's, say) starts with SIGINT ignored, which its children inherit and
    # Python then keeps: the trainer gets Ctrl-C's default disposition back, as in a terminal.
    victim = subprocess.Popen([sys.executable, str(driver), "slow", *arguments], env=env, stderr=subprocess.PIPE,
                              text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not (out / "checkpoint.npz").exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    victim.send_signal(signal.SIGINT)
    _, stderr = victim.communicate(timeout=30)
    assert victim.returncode == 130, stderr
    last = stderr.strip().splitlines()[-1]
    assert "Traceback" not in stderr
    assert re.fullmatch(r"rnnlm train: interrupted \(Ctrl-C\) after \d+ of 200 epochs; the checkpoint after epoch \d+, "
                        rf"{re.escape(str(out))}/checkpoint.npz, is kept; resume with: rnnlm train .*--out-dir "
                        rf"{re.escape(str(out))} .*", last), last
    resumed = subprocess.run([sys.executable, str(driver), "fast", *arguments], env=env, capture_output=True, text=True,
                             timeout=120)
    assert resumed.returncode == 0 and "resuming from" in resumed.stderr, resumed.stderr


def test_a_finished_model_is_not_silently_retrained(tmp_path, capsys):
    from rnnlm.cli import main

    data, vocab = write_tiny_data(tmp_path)
    arguments = ["train", "--data-dir", str(data), "--vocab", str(vocab), "--out-dir", str(tmp_path / "m"),
                 "--device", "cpu", "--epochs", "1", "--hidden-size", "4", "--batch-size", "8", "--no-progress"]
    assert main(arguments) == 0
    finished = (tmp_path / "m" / "params.npz").read_bytes()
    capsys.readouterr()
    assert main([*arguments[:-1], "--epochs", "3", "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "holds a finished model" in error and "--overwrite" in error
    assert (tmp_path / "m" / "params.npz").read_bytes() == finished
    assert main([*arguments, "--overwrite"]) == 0
