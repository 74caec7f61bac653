"""The GPU path's kernel launches and host syncs, counted on the CPU (rnnlm.launches), and the device
code path's results against the CPU path's.

The pinned figures are upper bounds of today's counts at config.yaml's default models: a change that
adds launches or host synchronisations to a training batch fails here and has to say why (and update
docs/engine.md's table)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from rnnlm import bench
from rnnlm.backend import get_backend
from rnnlm.gradcheck import random_batch
from rnnlm.launches import H100, CountingBackend, count_training_batches
from rnnlm.model import RNNLM, ModelConfig
from rnnlm.optim import Adam
from rnnlm.update import adam_step, sgd_step

CONFIG = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text(encoding="utf-8"))
MODELS = CONFIG["models"]
VOCAB = CONFIG["vocabulary_size"]
LENGTH = 25  # docs/engine.md's typical sentence
CPU = get_backend("cpu")

# model: (device batch size, launches per batch at most, tokens per launch there at least)
PINNED = {"rnn": (256, 235, 25.0), "gru": (512, 395, 30.0)}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_default_models_at_the_device_batch_size_meet_the_launch_targets(name):
    batch_size, most_launches, least_tokens_per_launch = PINNED[name]
    counts = count_training_batches(MODELS[name], VOCAB, batch_size, LENGTH, batches=1)
    assert counts["launches_per_batch"] <= most_launches, counts["calls"]
    assert counts["tokens_per_launch"] >= max(20.0, least_tokens_per_launch)
    assert counts["syncs_per_batch"] <= 1, counts["calls"]
    if name == "rnn":  # the target, in docs/engine.md's model of an H100
        assert counts["estimated_tokens_per_s"] >= 3_000_000


@pytest.mark.parametrize("name", sorted(PINNED))
def test_launches_per_batch_do_not_grow_with_the_batch_or_the_vocabulary(name):
    small = count_training_batches(MODELS[name], 300, 8, 6, batches=1)
    large = count_training_batches(MODELS[name], VOCAB, 64, 6, batches=1)
    assert small["launches_per_batch"] == large["launches_per_batch"]  # no loop over classes or rows
    assert small["syncs_per_batch"] == large["syncs_per_batch"] == 1


def test_counting_rules():
    backend = CountingBackend()
    xp = backend.xp
    a = backend.asarray(np.arange(12.0).reshape(3, 4))
    assert backend.counts.uploads == 1 and backend.counts.launches == 0
    start = backend.counts
    view = a[1:, ::2]  # basic slicing: a view, free
    b = a @ a.T  # one GEMM
    a += 1  # one ufunc
    gathered = a[backend.asarray(np.array([0, 2]))]  # one gather (and one upload)
    total = b.sum()  # one reduction, a 0-d device array as CuPy's
    counts = backend.counts - start
    assert counts.launches == 3 + 1 and counts.syncs == 0 and counts.uploads == 1
    assert counts.gemm_flops == 2 * 3 * 3 * 4
    float(total)
    backend.to_host(view)
    assert (backend.counts - start).syncs == 2
    assert xp.flatnonzero(gathered > 5).size and (backend.counts - start).syncs == 3  # its size is a sync
    empty, zeros = xp.empty(5), xp.zeros(5)
    assert (backend.counts - start).by_call.get("zeros") == 1 and "empty" not in (backend.counts - start).by_call
    assert isinstance(empty, np.ndarray) and zeros.sum() == 0


def test_the_device_model_is_launch_bound_at_small_batches_and_flop_bound_at_huge_ones():
    assert H100.seconds(200, 0, 1e6) == pytest.approx(200 * H100.launch_s)
    huge = 1e15
    assert H100.seconds(200, 1, huge) == pytest.approx(200 * H100.kernel_s + huge / (H100.efficiency * H100.peak_flops)
                                                       + H100.sync_s)


def _paired(config: ModelConfig):
    return RNNLM(config, CPU, seed=1), RNNLM(config, CountingBackend(), seed=1)


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-12), ("float32", 2e-5)])
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("keep", [False, True])
@pytest.mark.parametrize("layout", [{}, {"embedding_size": 16, "tie_embeddings": True},
                                    {"embedding_size": 8, "num_layers": 2}], ids=["one-hot", "tied", "stacked"])
def test_device_path_class_softmax_matches_the_cpu_path(dtype, rtol, cell, keep, layout):
    """One batched GEMM per pass instead of one per class: the same sums in another blocking, so
    equal to the per-class loop up to float rounding."""
    cpu, device = _paired(ModelConfig(vocab_size=300, hidden_size=16, cell=cell, output="class", dtype=dtype,
                                      num_classes=12, **layout))
    x, y, mask = random_batch(np.random.default_rng(2), 300, [9, 4, 7, 1, 12, 3])
    loss_cpu, count_cpu, grads_cpu = cpu.loss_and_grads(x, y, mask, keep_output_gradients=keep)
    loss_dev, count_dev, grads_dev = device.loss_and_grads(x, y, mask, keep_output_gradients=keep)
    assert count_cpu == count_dev and loss_dev == pytest.approx(loss_cpu, rel=rtol)
    assert set(grads_cpu) == set(grads_dev)
    for name, grad in grads_cpu.items():
        scale = float(np.abs(grad).max())
        np.testing.assert_allclose(np.asarray(grads_dev[name]), grad, rtol=rtol, atol=rtol * scale, err_msg=name)
    np.testing.assert_allclose(device.token_log_probs(x, y, mask), cpu.token_log_probs(x, y, mask),
                               rtol=rtol, atol=rtol)


def test_device_path_full_softmax_training_is_bit_identical_to_the_cpu_path():
    """Where the math did not change (the full softmax: a shift bound on the device, the fused
    kernels), the device path on NumPy reproduces the CPU's parameters exactly."""
    cpu, device = _paired(ModelConfig(vocab_size=200, hidden_size=12, cell="gru", dropout=0.2))
    optimizers = [Adam(model.params, model.backend.xp) for model in (cpu, device)]
    rngs = [model.backend.rng(4) for model in (cpu, device)]
    batches = [random_batch(np.random.default_rng(i), 200, [8, 5, 3]) for i in range(3)]
    for x, y, mask in batches:
        results = [adam_step(model, optimizer, x, y, mask, 0.01, 0.5, dropout_rng=rng)
                   for model, optimizer, rng in zip((cpu, device), optimizers, rngs)]
        assert results[0] == results[1]
    for name, value in cpu.params.items():
        assert np.asarray(device.params[name]).tobytes() == value.tobytes(), name


@pytest.mark.parametrize("output", ["full", "class"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_device_path_repairs_underflowing_rows_without_a_host_round_trip(output, dtype, monkeypatch):
    """Rows whose shift bound is so loose that every exp underflows: the CPU path recomputes them
    after a host check, the device path shifts them by their exact maximum in the same pass."""
    from rnnlm import softmax

    repaired = []
    for name in ("_repair_rows", "_needs_repair"):
        original = getattr(softmax, name)
        monkeypatch.setattr(softmax, name, lambda *args, _f=original, _n=name: repaired.append(_n) or _f(*args))
    original_class = softmax.ClassSoftmax._repair_class_rows
    monkeypatch.setattr(softmax.ClassSoftmax, "_repair_class_rows",
                        lambda *args: repaired.append("class") or original_class(*args))
    cpu, device = _paired(ModelConfig(vocab_size=120, hidden_size=8, output=output, dtype=dtype, num_classes=10))
    rng = np.random.default_rng(0)
    huge_row = 400.0 * rng.standard_normal(8).astype(dtype)  # one huge output row: a loose bound
    for model in (cpu, device):
        model.params["V"][0] = huge_row
    h = rng.standard_normal((30, 8)).astype(dtype)
    h[::3] *= 50
    y = rng.integers(1, 120, 30)
    results = [model.output.loss_and_grads(model.backend, model.params, model.backend.asarray(h),
                                           model.backend.asarray(y)) for model in (cpu, device)]
    (loss_cpu, dh_cpu, _), (loss_dev, dh_dev, _) = results
    assert ("class" if output == "class" else "_repair_rows") in repaired  # the CPU path did repair
    # The device repairs the bound-shifted logits (rounded at the bound's magnitude, as every row's
    # are), the CPU recomputes them unshifted: float32 agrees to ~ulp(bound) = 1e-4 of a logit here.
    tolerance = 1e-3 if dtype == "float32" else 1e-9
    assert np.isfinite(loss_cpu) and float(loss_dev) == pytest.approx(loss_cpu, rel=tolerance)
    np.testing.assert_allclose(np.asarray(dh_dev), dh_cpu, rtol=tolerance, atol=tolerance * float(np.abs(dh_cpu).max()))


def test_a_training_batch_of_host_arrays_costs_one_sync_and_a_device_batch_more():
    """The trainer's batches are host arrays: checks, token count and the class softmax's layout come
    from the host; the loss and the gradient norm come back in one transfer."""
    backend = CountingBackend()
    model = RNNLM(ModelConfig(vocab_size=100, hidden_size=8, output="class", dropout=0.3), backend, seed=0)
    x, y, mask = random_batch(np.random.default_rng(0), 100, [6, 3, 5])
    rng = backend.rng(0)
    sgd_step(model, x, y, mask, 0.5, 0.5, dropout_rng=rng)  # warm-up: the kept buffers
    start = backend.counts
    sgd_step(model, x, y, mask, 0.5, 0.5, dropout_rng=rng)
    assert (backend.counts - start).syncs == 1
    start = backend.counts
    sgd_step(model, *(backend.asarray(a) for a in (x, y, mask)), 0.5, 0.5, dropout_rng=rng)
    assert (backend.counts - start).syncs > 1  # device arrays: id checks and sizes must come back


def test_bench_launches_prints_a_report_per_model_and_batch_size(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("vocabulary_size: 80\nmodels:\n  small: {hidden_size: 6, batch_size: 4, output: class}\n",
                      encoding="utf-8")
    assert bench.main(["--launches", "--config", str(config), "--batch-sizes", "4", "8", "--length", "5"]) == 0
    captured = capsys.readouterr()
    import json

    report = json.loads(captured.out)
    rows = report["models"]["small"]
    assert [row["batch_size"] for row in rows] == [4, 8] and report["settings"]["vocab_size"] == 80
    assert all(row["tokens_per_launch"] > 0 and row["syncs_per_batch"] == 1 for row in rows)
    assert rows[1]["tokens_per_launch"] > rows[0]["tokens_per_launch"]
    assert "tok/launch" in captured.err and "small" in captured.err
