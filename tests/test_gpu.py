"""CPU/GPU parity: every cell and output layer (and the toolkit: embedding table, tied embeddings,
stacked layers, their dropouts), float64 and float32, through CuPy on a CUDA device.

Skipped with the reason where CuPy or a usable CUDA device is missing, except when the environment
variable RNNLM_REQUIRE_GPU is set (benchmarks/gpu_check.sh sets it): there a missing device fails.
Both sides start from the same host-initialised parameters and get the same host batches and
dropout masks, so they compute the same function; they differ only by floating-point rounding
(other reduction orders in cuBLAS and CuPy's kernels), hence the per-dtype tolerances.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from rnnlm import backend as backend_module
from rnnlm.backend import get_backend
from rnnlm.generate import beam_search, sample_sentences, score_sentences
from rnnlm.gradcheck import random_batch
from rnnlm.model import RNNLM, DropoutMasks, ModelConfig
from rnnlm.optim import Adam
from rnnlm.update import adam_step, sgd_step
from rnnlm.vocab import SPECIAL_TOKENS

_CUPY, _REASON = backend_module._usable_cupy()
if _CUPY is None:
    if os.environ.get("RNNLM_REQUIRE_GPU"):
        pytest.fail(f"RNNLM_REQUIRE_GPU is set but the GPU tests cannot run: {_REASON}", pytrace=False)
    pytest.skip(f"needs CuPy and a usable CUDA device: {_REASON}", allow_module_level=True)

CPU, GPU = get_backend("cpu"), get_backend("gpu")
VOCAB = 60
CELLS = [("rnn", "tanh"), ("rnn", "relu"), ("gru", "tanh"), ("lstm", "tanh")]
OUTPUTS = ["full", "class"]
DTYPES = ["float64", "float32"]
# (rtol, atol as a fraction of the reference's largest magnitude)
TOLERANCE = {"float64": (1e-9, 1e-12), "float32": (2e-4, 2e-5)}


def assert_close(gpu_value, cpu_value, dtype: str, what: str) -> None:
    rtol, scale = TOLERANCE[dtype]
    cpu_value = np.asarray(cpu_value, dtype=np.float64)
    gpu_value = np.asarray(GPU.to_host(gpu_value), dtype=np.float64)
    atol = scale * max(1.0, float(np.abs(cpu_value).max(initial=0.0)))
    np.testing.assert_allclose(gpu_value, cpu_value, rtol=rtol, atol=atol, err_msg=what)


def model_pair(cell: str, activation: str, output: str, dtype: str, **overrides) -> tuple[RNNLM, RNNLM]:
    config = ModelConfig(vocab_size=VOCAB, hidden_size=7, cell=cell, activation=activation, output=output,
                         dtype=dtype, num_classes=6 if output == "class" else 0, **overrides)
    return RNNLM(config, CPU, seed=3), RNNLM(config, GPU, seed=3)


def _each_mask(masks: DropoutMasks, convert) -> DropoutMasks:
    layers = None if masks.layers is None else [convert(m) for m in masks.layers]
    return DropoutMasks(*(None if m is None else convert(m) for m in (masks.inputs, masks.hidden)),
                        layers=layers, words=None if masks.words is None else convert(masks.words))


def host_masks(model: RNNLM, shape) -> DropoutMasks:
    """Masks drawn once on the host, so both devices drop the same units."""
    return _each_mask(model.dropout_masks(CPU.rng(9), shape), np.asarray)


def on_gpu(masks: DropoutMasks) -> DropoutMasks:
    return _each_mask(masks, GPU.asarray)


# The toolkit on top of every cell and output layer: an embedding table, tied embeddings, stacked
# layers with every dropout (locked), so each new parameter and update path runs on both devices.
TOOLKITS = {
    "embedding": {"embedding_size": 4},
    "tied-stacked": {"embedding_size": 7, "tie_embeddings": True, "num_layers": 2, "layer_dropout": 0.3,
                     "embedding_dropout": 0.2, "locked_dropout": True},
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("cell, activation", CELLS)
@pytest.mark.parametrize("truncate", [0, 2])
def test_loss_and_gradients_match(cell, activation, output, dtype, truncate):
    cpu, gpu = model_pair(cell, activation, output, dtype, bptt_truncate=truncate, dropout=0.3, input_dropout=0.2)
    x, y, mask = random_batch(np.random.default_rng(1), VOCAB, [9, 4, 7, 1])
    masks = host_masks(cpu, x.shape)
    loss_cpu, count_cpu, grads_cpu = cpu.loss_and_grads(x, y, mask, dropout=masks)
    loss_gpu, count_gpu, grads_gpu = gpu.loss_and_grads(x, y, mask, dropout=on_gpu(masks))
    assert isinstance(loss_gpu, float) and count_gpu == count_cpu == 21
    assert_close(loss_gpu, loss_cpu, dtype, "loss")
    assert set(grads_gpu) == set(grads_cpu)
    for name in grads_cpu:
        assert grads_gpu[name].dtype == np.dtype(dtype), name
        assert_close(grads_gpu[name], grads_cpu[name], dtype, name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("cell, activation", CELLS)
def test_sparse_fused_sgd_steps_match(cell, activation, output, dtype):
    """The trainer's update (sparse U gradient, output layer fused into its GEMM), three steps."""
    cpu, gpu = model_pair(cell, activation, output, dtype)
    rng = np.random.default_rng(2)
    for _ in range(3):
        x, y, mask = random_batch(rng, VOCAB, [6, 3, 5])
        loss_cpu, _, norm_cpu = sgd_step(cpu, x, y, mask, learning_rate=0.5, clip_norm=0.0)
        loss_gpu, _, norm_gpu = sgd_step(gpu, GPU.asarray(x), GPU.asarray(y), GPU.asarray(mask), 0.5, 0.0)
        assert_close(loss_gpu, loss_cpu, dtype, "loss")
        assert_close(norm_gpu, norm_cpu, dtype, "gradient norm")
    for name, value in cpu.params.items():
        assert_close(gpu.params[name], value, dtype, name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("cell, activation", CELLS)
def test_scoring_and_stepping_match(cell, activation, output, dtype):
    cpu, gpu = model_pair(cell, activation, output, dtype)
    x, y, mask = random_batch(np.random.default_rng(3), VOCAB, [8, 2, 5])
    per_token = gpu.token_log_probs(x, y, mask)
    assert isinstance(per_token, np.ndarray)
    assert_close(per_token, cpu.token_log_probs(x, y, mask), dtype, "token log-probabilities")
    (loss_gpu, count_gpu), (loss_cpu, count_cpu) = gpu.loss(x, y, mask), cpu.loss(x, y, mask)
    assert count_gpu == count_cpu == 15
    assert_close(loss_gpu, loss_cpu, dtype, "loss")

    tokens = np.array([0, 5, 17, 59])
    log_probs_gpu, state_gpu = gpu.step(tokens, gpu.initial_state(4))
    log_probs_cpu, state_cpu = cpu.step(tokens, cpu.initial_state(4))
    assert_close(log_probs_gpu, log_probs_cpu, dtype, "next-word log-probabilities")
    assert_close(state_gpu, state_cpu, dtype, "state")
    assert_close(GPU.xp.exp(log_probs_gpu).sum(axis=1), np.ones(4), dtype, "probabilities sum to 1")


@pytest.mark.parametrize("toolkit", list(TOOLKITS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("cell, activation", CELLS)
def test_toolkit_loss_gradients_updates_and_scoring_match(cell, activation, output, dtype, toolkit):
    """Embedding table, tied V, stacked layers and their dropouts: loss and gradients, three
    trainer steps (sparse/fused SGD, clipped SGD on the kept buffers, lazy Adam), scoring, stepping."""
    overrides = {"dropout": 0.3, "input_dropout": 0.2, **TOOLKITS[toolkit]}
    cpu, gpu = model_pair(cell, activation, output, dtype, **overrides)
    x, y, mask = random_batch(np.random.default_rng(1), VOCAB, [9, 4, 7, 1])
    masks = host_masks(cpu, x.shape)
    loss_cpu, _, grads_cpu = cpu.loss_and_grads(x, y, mask, dropout=masks)
    loss_gpu, _, grads_gpu = gpu.loss_and_grads(x, y, mask, dropout=on_gpu(masks))
    assert_close(loss_gpu, loss_cpu, dtype, "loss")
    assert set(grads_gpu) == set(grads_cpu)
    for name in grads_cpu:
        assert_close(grads_gpu[name], grads_cpu[name], dtype, name)
    optimizers = Adam(cpu.params, CPU.xp), Adam(gpu.params, GPU.xp)
    rng = np.random.default_rng(2)
    for clip in (0.0, 0.5, "adam"):
        x, y, mask = random_batch(rng, VOCAB, [6, 3, 5])
        if clip == "adam":
            adam_step(cpu, optimizers[0], x, y, mask, 0.01, 1.0)
            adam_step(gpu, optimizers[1], GPU.asarray(x), GPU.asarray(y), GPU.asarray(mask), 0.01, 1.0)
        else:
            sgd_step(cpu, x, y, mask, learning_rate=0.5, clip_norm=clip)
            sgd_step(gpu, GPU.asarray(x), GPU.asarray(y), GPU.asarray(mask), 0.5, clip)
        for name, value in cpu.params.items():
            assert_close(gpu.params[name], value, dtype, f"{name} after the {clip} step")
    x, y, mask = random_batch(np.random.default_rng(3), VOCAB, [8, 2, 5])
    assert_close(gpu.token_log_probs(x, y, mask), cpu.token_log_probs(x, y, mask), dtype, "token log-probabilities")
    tokens = np.array([0, 5, 17, 59])
    log_probs_gpu, state_gpu = gpu.step(tokens, gpu.initial_state(4))
    log_probs_cpu, state_cpu = cpu.step(tokens, cpu.initial_state(4))
    assert_close(log_probs_gpu, log_probs_cpu, dtype, "next-word log-probabilities")
    assert_close(state_gpu, state_cpu, dtype, "stacked state")


@pytest.mark.parametrize("output", OUTPUTS)
def test_generation_matches_in_float64(output):
    """Sampling draws its uniforms on the host, so one seed gives the same sentences on both devices;
    beam search and scoring agree too."""
    cpu, gpu = model_pair("gru", "tanh", output, "float64")
    words = [*SPECIAL_TOKENS, *(f"w{i}" for i in range(len(SPECIAL_TOKENS), VOCAB))]
    assert sample_sentences(gpu, words, 5, min_length=1, max_length=12, seed=4) == \
        sample_sentences(cpu, words, 5, min_length=1, max_length=12, seed=4)
    beam_gpu, beam_cpu = (beam_search(m, words, beam_width=3, min_length=2, max_length=6) for m in (gpu, cpu))
    assert [s.words for s in beam_gpu] == [s.words for s in beam_cpu]
    np.testing.assert_allclose([s.log_prob for s in beam_gpu], [s.log_prob for s in beam_cpu], rtol=1e-9)
    sentences = [["w3", "w9", "w1"], ["w7"], ["unknown", "w2"]]
    np.testing.assert_allclose([s.log_prob for s in score_sentences(gpu, words, sentences)],
                               [s.log_prob for s in score_sentences(cpu, words, sentences)], rtol=1e-9)


def test_out_of_range_ids_on_the_device_are_refused():
    """CuPy's integer indexing wraps an out-of-range id around instead of raising; the model checks."""
    _, gpu = model_pair("rnn", "tanh", "full", "float32")
    x, y, mask = random_batch(np.random.default_rng(5), VOCAB, [3, 2])
    bad = x.copy()
    bad[0, 0] = VOCAB
    for batch in ((bad, y, mask), (GPU.asarray(bad), GPU.asarray(y), GPU.asarray(mask))):
        with pytest.raises(ValueError, match="outside 0..59"):
            gpu.loss_and_grads(*batch)


def test_backend_primitives_match():
    rng = np.random.default_rng(6)
    indices = rng.integers(0, 9, (5, 4))
    values = rng.normal(size=(5, 4, 3))
    unique_cpu, sums_cpu = CPU.sum_by_index(indices, values)
    unique_gpu, sums_gpu = GPU.sum_by_index(GPU.asarray(indices), GPU.asarray(values))
    np.testing.assert_array_equal(GPU.to_host(unique_gpu), unique_cpu)
    assert_close(sums_gpu, sums_cpu, "float64", "sums")
    target = GPU.xp.zeros((9, 3))
    GPU.scatter_add(target, GPU.asarray(indices), GPU.asarray(values))
    expected = np.zeros((9, 3))
    np.add.at(expected, indices.ravel(), values.reshape(-1, 3))
    assert_close(target, expected, "float64", "scatter_add")
    mask = GPU.to_host(GPU.dropout_mask(GPU.rng(0), (200, 500), 0.25, np.float32))
    assert set(np.unique(mask)) == {0.0, np.float32(1 / 0.75)}
    assert abs((mask == 0).mean() - 0.25) < 0.01


@pytest.mark.parametrize("cell, activation", CELLS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_document_mode_state_resets_and_stream_scores_match(cell, activation, dtype):
    from rnnlm import streams
    from rnnlm.data import Split

    cpu, gpu = model_pair(cell, activation, "class", dtype, context="document")
    rng = np.random.default_rng(21)
    x, y, mask = random_batch(rng, VOCAB, [8, 8, 5])
    state = rng.normal(0, 0.5, (3, cpu.cell.state_size)).astype(dtype)
    resets = np.zeros(x.shape, dtype=np.float32)
    resets[3, 0] = resets[5, 1] = 1
    loss_cpu, _, grads_cpu, final_cpu = cpu.loss_and_grads(x, y, mask, state=state, resets=resets, return_state=True)
    loss_gpu, _, grads_gpu, final_gpu = gpu.loss_and_grads(GPU.asarray(x), GPU.asarray(y), GPU.asarray(mask),
                                                           state=GPU.asarray(state), resets=GPU.asarray(resets),
                                                           return_state=True)
    assert_close(np.float64(loss_gpu), loss_cpu, dtype, "loss")
    assert_close(final_gpu, final_cpu, dtype, "final state")
    for name in grads_cpu:
        assert_close(grads_gpu[name], grads_cpu[name], dtype, name)
    lengths = rng.integers(1, 7, 12)
    split = Split.from_ids(rng.integers(3, VOCAB, lengths.sum()), lengths, doc_offsets=[0, 3, 4, 9, 12])
    assert_close(streams.token_log_probs(gpu, split, rows=2, window=5), streams.token_log_probs(cpu, split),
                 dtype, "stream scores")
