"""The model against a straightforward per-sentence implementation of the tutorial, plus its API."""

import json
import zipfile

import numpy as np
import pytest

from rnnlm.backend import get_backend
from rnnlm.gradcheck import central_difference, random_batch
from rnnlm.io import RnnlmError, load_npz, save_npz
from rnnlm.model import RNNLM, ModelConfig
from rnnlm.softmax import frequency_classes

CPU = get_backend("cpu")


def tutorial_sentence(params, x, y, truncate):
    """The tutorial's forward_propagation + bptt for one sentence (tanh, with biases), float64."""
    U, W, V, b_h, b_y = (params[name] for name in ("U", "W", "V", "b_h", "b_y"))
    steps, hidden = len(x), W.shape[0]
    s = np.zeros((steps + 1, hidden))  # s[-1] is the zero initial state
    o = np.zeros((steps, V.shape[0]))
    for t in range(steps):
        s[t] = np.tanh(U[:, x[t]] + W.dot(s[t - 1]) + b_h)
        logits = V.dot(s[t]) + b_y
        o[t] = np.exp(logits - logits.max())
        o[t] /= o[t].sum()
    loss = -np.log(o[np.arange(steps), y]).sum()
    grads = {name: np.zeros_like(value) for name, value in params.items()}
    delta_o = o.copy()
    delta_o[np.arange(steps), y] -= 1
    for t in range(steps - 1, -1, -1):
        grads["V"] += np.outer(delta_o[t], s[t])
        grads["b_y"] += delta_o[t]
        delta_t = V.T.dot(delta_o[t]) * (1 - s[t] ** 2)
        for bptt_step in range(t, max(0, t - truncate) - 1, -1):
            grads["W"] += np.outer(delta_t, s[bptt_step - 1])
            grads["U"][:, x[bptt_step]] += delta_t
            grads["b_h"] += delta_t
            delta_t = W.T.dot(delta_t) * (1 - s[bptt_step - 1] ** 2)
    return loss, grads


def make_model(vocab=12, hidden=5, **overrides):
    config = ModelConfig(vocab_size=vocab, hidden_size=hidden, dtype="float64", **overrides)
    return RNNLM(config, CPU, seed=7)


def host_params(model):
    return {name: np.array(value) for name, value in model.params.items()}


def test_untrained_loss_is_log_vocabulary_size():
    model = RNNLM(ModelConfig(vocab_size=8000, hidden_size=100), CPU, seed=0)
    x, y, mask = random_batch(np.random.default_rng(0), 8000, [20, 15, 9, 30])
    loss, count = model.loss(x, y, mask)
    assert count == 74
    assert abs(loss / count - np.log(8000)) < 0.01
    assert abs(np.log(8000) - 8.987) < 1e-3


def test_batch_of_one_with_truncation_4_is_the_tutorials_gradient():
    model = make_model(bptt_truncate=4)
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 12, 9), rng.integers(0, 12, 9)
    loss, count, grads = model.loss_and_grads(x[:, None], y[:, None], np.ones((9, 1)))
    ref_loss, ref_grads = tutorial_sentence(host_params(model), x, y, truncate=4)
    assert count == 9
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
    for name, ref in ref_grads.items():
        np.testing.assert_allclose(grads[name], ref, rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("truncate", [0, 1, 3])
def test_padded_batch_is_the_sum_of_its_sentences(truncate):
    model = make_model(bptt_truncate=truncate)
    lengths = [7, 2, 5, 7, 1]
    x, y, mask = random_batch(np.random.default_rng(2), 12, lengths)
    loss, count, grads = model.loss_and_grads(x, y, mask)
    assert count == sum(lengths)
    params = host_params(model)
    total_loss, total = 0.0, {name: np.zeros_like(value) for name, value in params.items()}
    for b, length in enumerate(lengths):
        sentence_loss, sentence_grads = tutorial_sentence(params, x[:length, b], y[:length, b], truncate or 1000)
        total_loss += sentence_loss
        for name in total:
            total[name] += sentence_grads[name]
    np.testing.assert_allclose(loss, total_loss, rtol=1e-12)
    for name in total:
        np.testing.assert_allclose(grads[name], total[name], rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("cell, output", [("rnn", "full"), ("gru", "class"), ("lstm", "full"), ("rnn", "class")])
def test_padding_contents_change_nothing(cell, output):
    model = make_model(cell=cell, bptt_truncate=2, output=output)
    x, y, mask = random_batch(np.random.default_rng(3), 12, [6, 3, 4])
    loss, count, grads = model.loss_and_grads(x, y, mask)
    pad = mask == 0
    x2, y2 = x.copy(), y.copy()
    x2[pad], y2[pad] = 11, 0
    loss2, count2, grads2 = model.loss_and_grads(x2, y2, mask)
    assert (loss, count) == (loss2, count2)
    for name in grads:
        np.testing.assert_array_equal(grads[name], grads2[name])
    np.testing.assert_array_equal(model.token_log_probs(x, y, mask)[pad], 0)


def test_chunking_the_softmax_changes_nothing():
    model = make_model(vocab=30)
    x, y, mask = random_batch(np.random.default_rng(4), 30, [8, 5, 7])
    loss, _, grads = model.loss_and_grads(x, y, mask)
    log_probs = model.token_log_probs(x, y, mask)
    model.output.chunk_rows = 3
    loss_chunked, _, grads_chunked = model.loss_and_grads(x, y, mask)
    np.testing.assert_allclose(loss_chunked, loss, rtol=1e-12)
    np.testing.assert_allclose(model.token_log_probs(x, y, mask), log_probs, rtol=1e-12)
    for name in grads:
        np.testing.assert_allclose(grads_chunked[name], grads[name], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_rows_with_a_loose_shift_bound_are_recomputed_exactly(dtype):
    # A huge but nearly orthogonal output row makes the Cauchy-Schwarz shift far too large, so the
    # fused pass underflows and must fall back to the exact maximum.
    config = ModelConfig(vocab_size=12, hidden_size=4, dtype=dtype)
    model = RNNLM(config, CPU, seed=0)
    model.params["U"][:] = 0.5
    model.params["V"][0] = np.array([1e4, -1e4, 1e4, -1e4], dtype=dtype)
    x, y, mask = random_batch(np.random.default_rng(5), 12, [5, 4])
    loss, _, grads = model.loss_and_grads(x, y, mask)
    cache = model.forward_cache(x, mask)
    hidden = np.asarray(cache.states[1:], dtype=np.float64).reshape(-1, 4)[mask.ravel() > 0]
    logits = hidden @ np.asarray(model.params["V"], np.float64).T + np.asarray(model.params["b_y"], np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -log_softmax[np.arange(hidden.shape[0]), y.ravel()[mask.ravel() > 0]].sum()
    assert np.isfinite(loss)
    np.testing.assert_allclose(loss, expected, rtol=1e-4 if dtype == "float32" else 1e-10)
    assert all(np.isfinite(np.asarray(g)).all() for g in grads.values())


@pytest.mark.parametrize("cell, output", [("rnn", "full"), ("gru", "full"), ("lstm", "class"), ("rnn", "class")])
def test_step_by_step_scoring_matches_batch_scoring(cell, output):
    model = make_model(cell=cell, output=output)
    x, y, mask = random_batch(np.random.default_rng(6), 12, [5, 3])
    log_probs = model.token_log_probs(x, y, mask)
    state = model.initial_state(2)
    for t in range(x.shape[0]):
        step_log_probs, state = model.step(x[t], state)
        np.testing.assert_allclose(np.exp(step_log_probs).sum(axis=1), 1.0, rtol=1e-12)
        expected = step_log_probs[np.arange(2), y[t]] * mask[t]
        np.testing.assert_allclose(log_probs[t], expected, rtol=1e-10, atol=1e-12)
    loss, count = model.loss(x, y, mask)
    assert count == 8
    np.testing.assert_allclose(loss, -log_probs.sum(), rtol=1e-12)


@pytest.mark.parametrize("cell, output", [("rnn", "full"), ("gru", "class"), ("lstm", "full")])
def test_diagnostics_primitives_chain_to_the_initial_state_gradient(cell, output):
    model = make_model(cell=cell, output=output)
    x, y, mask = random_batch(np.random.default_rng(7), 12, [6, 4])
    state0 = np.random.default_rng(8).uniform(-0.5, 0.5, (2, model.cell.state_size))
    cache = model.forward_cache(x, mask, state=state0)
    grad = np.zeros_like(state0)
    for t in range(x.shape[0] - 1, -1, -1):
        grad = model.state_vjp(cache, t, grad + model.loss_grad_state(cache, y, t))
        assert grad.shape == state0.shape

    def loss_from(state):
        states = model.forward_cache(x, mask, state=state).states[1:]
        hidden = model.cell.hidden(states).reshape(-1, model.config.hidden_size)
        log_probs = model.output.target_log_probs(CPU, model.params, hidden, y.reshape(-1))
        return -(log_probs * mask.reshape(-1)).sum()

    numeric = np.zeros_like(state0)
    for index in np.ndindex(state0.shape):

        def loss_at(offset):
            bumped = state0.copy()
            bumped[index] += offset
            return loss_from(bumped)

        numeric[index] = central_difference(loss_at, 1e-3)
    np.testing.assert_allclose(grad, numeric, rtol=1e-7, atol=1e-10)


def test_bad_batches_are_refused():
    model = make_model()
    x, y, mask = random_batch(np.random.default_rng(9), 12, [4, 2])
    with pytest.raises(RnnlmError, match="outside"):
        model.loss_and_grads(x + 12, y, mask)
    with pytest.raises(RnnlmError, match="padding before"):
        model.loss_and_grads(x, y, mask[::-1])
    with pytest.raises(RnnlmError, match="shape"):
        model.loss(x, y[:-1], mask)
    with pytest.raises(RnnlmError, match="integer"):
        model.loss(x.astype(float), y, mask)


def test_config_validation():
    with pytest.raises(RnnlmError, match="activation"):
        ModelConfig(vocab_size=10, activation="sigmoid")
    with pytest.raises(RnnlmError, match="unknown model config keys"):
        ModelConfig.from_dict({"vocab_size": 10, "layers": 2})


VOCAB = ["SENTENCE_START", "SENTENCE_END", "UNKNOWN_TOKEN"] + [f"w{i}" for i in range(9)]


@pytest.mark.parametrize("cell, output", [("rnn", "full"), ("gru", "full"), ("lstm", "class")])
def test_save_and_load_round_trip(tmp_path, cell, output):
    model = make_model(cell=cell, bptt_truncate=3, output=output, num_classes=4 if output == "class" else 0)
    path = tmp_path / "params.npz"
    model.save(path, VOCAB, {"epoch": 3})
    loaded, vocab, metadata = RNNLM.load(path, CPU)
    assert vocab == VOCAB and metadata == {"epoch": 3} and loaded.config == model.config
    for name, value in model.params.items():
        np.testing.assert_array_equal(loaded.params[name], value)
    arrays = load_npz(path)
    assert json.loads(str(arrays["config_json"]))["cell"] == cell and int(arrays["format_version"]) == 1


def test_loading_bad_files_fails_clearly(tmp_path):
    model = make_model()
    good = tmp_path / "params.npz"
    model.save(good, VOCAB, {})
    arrays = load_npz(good)

    def variant(name, **changes):
        path = tmp_path / name
        save_npz(path, **{**arrays, **changes})
        return path

    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(good.read_bytes()[:200])
    with pytest.raises(RnnlmError, match="not a readable"):
        RNNLM.load(corrupt, CPU)
    pickled = tmp_path / "pickled.npz"
    with zipfile.ZipFile(pickled, "w") as archive:
        with archive.open("U.npy", "w") as handle:
            np.lib.format.write_array(handle, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(RnnlmError, match="pickle"):
        RNNLM.load(pickled, CPU)
    with pytest.raises(RnnlmError, match="vocab"):
        RNNLM.load(variant("short_vocab.npz", vocab=np.array(VOCAB[:-1])), CPU)
    with pytest.raises(RnnlmError, match="parameter W"):
        RNNLM.load(variant("bad_shape.npz", W=np.zeros((3, 3))), CPU)
    with pytest.raises(RnnlmError, match="NaN"):
        RNNLM.load(variant("nan.npz", V=np.full_like(arrays["V"], np.nan)), CPU)
    with pytest.raises(RnnlmError, match="format version"):
        RNNLM.load(variant("version.npz", format_version=np.array(99)), CPU)
    with pytest.raises(RnnlmError, match="unknown model config keys"):
        RNNLM.load(variant("config.npz", config_json=np.array(json.dumps({"vocab_size": 12, "depth": 2}))), CPU)
    with pytest.raises(RnnlmError, match="vocab_size"):
        model.save(tmp_path / "x.npz", VOCAB[:-1], {})


def test_frequency_classes_split_the_unigram_mass_into_contiguous_ranges():
    counts = np.array([0, 50, 30, 10, 4, 3, 1, 1, 1, 0])
    classes = frequency_classes(counts, 4)
    assert classes[0] == 0 and classes[-1] == 3
    assert set(np.diff(classes)) <= {0, 1}
    # the heavy words get classes of their own, the light tail shares the last ones
    assert classes[1] != classes[2] and np.bincount(classes)[-1] >= 2
    zipf = frequency_classes(np.round(1e6 / np.arange(1, 8001)), 89)
    assert zipf.max() == 88 and np.bincount(zipf).min() >= 1


def test_class_output_probabilities_sum_to_one_and_classes_are_kept(tmp_path):
    counts = np.array([5, 40, 9, 30, 20, 10, 8, 6, 5, 4, 3, 2])
    model = RNNLM(ModelConfig(vocab_size=12, hidden_size=5, output="class", num_classes=3, dtype="float64"),
                  CPU, seed=2, word_counts=counts)
    log_probs, _ = model.step(np.array([0, 4]), model.initial_state(2))
    np.testing.assert_allclose(np.exp(log_probs).sum(axis=1), 1.0, rtol=1e-12)
    assert set(model.params) == {"U", "W", "b_h", "V", "b_y", "V_class", "b_class"}
    path = tmp_path / "class.npz"
    model.save(path, VOCAB, {})
    loaded, _, _ = RNNLM.load(path, CPU)
    np.testing.assert_array_equal(loaded.output.class_of_word, model.output.class_of_word)
    np.testing.assert_allclose(loaded.step(np.array([0, 4]), loaded.initial_state(2))[0], log_probs)
    with pytest.raises(RnnlmError, match="class_of_word"):
        RNNLM(model.config, CPU, class_of_word=np.array([0, 2] + [3] * 10))
    with pytest.raises(RnnlmError, match="word_counts"):
        RNNLM(model.config, CPU, word_counts=np.ones(5))


def test_parameters_rebound_by_a_caller_are_used():
    # V and b_y live in the fused layer's storage; assigning new arrays must still take effect.
    model = make_model()
    x, y, mask = random_batch(np.random.default_rng(10), 12, [4])
    model.loss(x, y, mask)
    model.params["V"] = np.zeros((12, 5))
    model.params["b_y"] = np.zeros(12)
    loss, count = model.loss(x, y, mask)
    np.testing.assert_allclose(loss / count, np.log(12), rtol=1e-12)


def test_peak_memory_holds_one_chunk_of_logits_not_the_batch():
    import tracemalloc

    config = ModelConfig(vocab_size=2000, hidden_size=16)
    model = RNNLM(config, CPU, seed=0)
    model.output.chunk_rows = 50
    x, y, mask = random_batch(np.random.default_rng(11), 2000, [20] * 40)
    all_logits_bytes = x.size * 2000 * 4  # 3.2 MB of float32 logits for the whole batch
    model.loss_and_grads(x, y, mask)  # warm-up: the fused layer's weight storage
    tracemalloc.start()
    try:
        model.loss_and_grads(x, y, mask)
        model.token_log_probs(x, y, mask)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < all_logits_bytes / 3, peak


@pytest.mark.parametrize("output", ["full", "class"])
def test_a_batch_of_padding_only_has_zero_loss_and_gradients(output):
    model = make_model(output=output)
    x, y, mask = np.zeros((3, 2), dtype=np.int64), np.ones((3, 2), dtype=np.int64), np.zeros((3, 2))
    loss, count, grads = model.loss_and_grads(x, y, mask)
    assert (loss, count) == (0.0, 0)
    assert all(not np.asarray(grad).any() for grad in grads.values())


@pytest.mark.parametrize("output, chunk_rows", [("full", None), ("full", 3), ("class", None)])
@pytest.mark.parametrize("truncate", [0, 2])
def test_sparse_and_fused_sgd_step_matches_the_dense_update(output, chunk_rows, truncate):
    """sparse_input + output_step (the trainer's unclipped step) = the dense gradients, applied."""
    x, y, mask = random_batch(np.random.default_rng(9), 30, [8, 5, 7])
    dense, fused = (make_model(vocab=30, output=output, bptt_truncate=truncate) for _ in range(2))
    if chunk_rows:
        fused.output.chunk_rows = chunk_rows
    step = -0.3
    loss, count, grads = dense.loss_and_grads(x, y, mask)
    expected = {name: host_params(dense)[name] + step * np.asarray(grads[name]) for name in grads}
    fused_loss, fused_count, remaining = fused.loss_and_grads(x, y, mask, sparse_input=True, output_step=step)
    assert (fused_loss, fused_count) == pytest.approx((loss, count), rel=1e-12)
    assert set(remaining) == {"U", "W", "b_h"}
    words = np.unique(x[mask > 0])
    np.testing.assert_array_equal(remaining["U"].indices, words)
    np.testing.assert_allclose(remaining["U"].rows, np.asarray(grads["U"]).T[words], rtol=1e-12, atol=1e-15)
    assert fused.gradient_squared_norm(remaining) == pytest.approx(
        sum(float((np.asarray(grads[name]) ** 2).sum()) for name in remaining), rel=1e-12
    )
    fused.apply_update(remaining, step)
    for name, value in expected.items():
        np.testing.assert_allclose(host_params(fused)[name], value, rtol=1e-12, atol=1e-14, err_msg=name)


def test_dropout_masks_are_inverted_bernoulli_and_reproducible():
    model = make_model(dropout=0.25, input_dropout=0.5, cell="gru")
    backend = model.backend
    masks = model.dropout_masks(backend.rng(7), (40, 30))
    assert masks.inputs.shape == (40, 30, 3 * model.config.hidden_size)
    assert masks.hidden.shape == (40, 30, model.config.hidden_size)
    for mask, rate in ((masks.hidden, 0.25), (masks.inputs, 0.5)):
        assert np.unique(mask).tolist() == [0.0, pytest.approx(1 / (1 - rate))]
        assert (mask == 0).mean() == pytest.approx(rate, abs=0.03)
        assert mask.dtype == model.dtype
    again = model.dropout_masks(backend.rng(7), (40, 30))
    np.testing.assert_array_equal(again.hidden, masks.hidden)
    assert not np.array_equal(model.dropout_masks(backend.rng(8), (40, 30)).hidden, masks.hidden)
    assert make_model().dropout_masks(backend.rng(7), (40, 30)) is None
    only_output = make_model(dropout=0.1).dropout_masks(backend.rng(7), (4, 3))
    assert only_output.inputs is None and only_output.hidden is not None


@pytest.mark.parametrize("output", ["full", "class"])
def test_dropout_acts_in_the_training_pass_only(output):
    """Scoring ignores the dropout rates; a training pass with masks computes the masked network."""
    x, y, mask = random_batch(np.random.default_rng(2), 30, [8, 5, 7])
    with_dropout = make_model(vocab=30, output=output, dropout=0.5, input_dropout=0.3)
    without = make_model(vocab=30, output=output)
    for model in (with_dropout, without):  # larger weights than at initialisation: visible effects
        for value in model.params.values():
            value *= 8
    assert with_dropout.loss(x, y, mask) == without.loss(x, y, mask)
    masks = with_dropout.dropout_masks(with_dropout.backend.rng(0), x.shape)
    masked_loss = with_dropout.loss(x, y, mask, masks)[0]
    assert masked_loss != pytest.approx(without.loss(x, y, mask)[0], rel=1e-2)
    assert with_dropout.loss_and_grads(x, y, mask, dropout=masks)[0] == pytest.approx(masked_loss, rel=1e-6)
    # All-ones masks are the deterministic network.
    ones = type(masks)(np.ones_like(masks.inputs), np.ones_like(masks.hidden))
    assert with_dropout.loss_and_grads(x, y, mask, dropout=ones)[0] == pytest.approx(without.loss(x, y, mask)[0], rel=1e-6)


@pytest.mark.parametrize("output, chunk_rows", [("full", None), ("full", 3), ("class", None)])
def test_kept_output_gradients_match_the_dense_ones_and_their_update(output, chunk_rows):
    """keep_output_gradients (the trainer's clipped step): the same gradients, norm and update as
    freshly allocated ones, with the output layer's update done on its kept buffer."""
    x, y, mask = random_batch(np.random.default_rng(4), 30, [8, 5, 7])
    dense, kept = (make_model(vocab=30, output=output) for _ in range(2))
    if chunk_rows:
        kept.output.chunk_rows = chunk_rows
    step = -0.3
    loss, count, grads = dense.loss_and_grads(x, y, mask)
    expected = {name: host_params(dense)[name] + step * np.asarray(grads[name]) for name in grads}
    expected_norm = sum(float((np.asarray(grad) ** 2).sum()) for grad in grads.values())
    for _ in range(2):  # the second call reuses (and must fully overwrite) the kept buffers
        kept_loss, kept_count, kept_grads = kept.loss_and_grads(x, y, mask, sparse_input=True,
                                                                keep_output_gradients=True)
    assert (kept_loss, kept_count) == pytest.approx((loss, count), rel=1e-12)
    assert kept.output.deferred_updates(kept_grads), "the output gradients should live in kept buffers"
    for name in ("V", "b_y"):
        np.testing.assert_allclose(np.asarray(kept_grads[name]), np.asarray(grads[name]), rtol=1e-12, atol=1e-15)
    assert kept.gradient_squared_norm(kept_grads) == pytest.approx(expected_norm, rel=1e-12)
    kept.apply_update(kept_grads, step)
    for name, value in expected.items():
        np.testing.assert_allclose(host_params(kept)[name], value, rtol=1e-12, atol=1e-14, err_msg=name)


# ------------------------------------------------------------------ state across windows (document mode)
STATE_CASES = [("rnn", "full", 0), ("rnn", "class", 2), ("gru", "full", 0), ("lstm", "class", 3), ("lstm", "full", 0)]


def _dense(grads):
    return {name: np.array(value) for name, value in grads.items()}


@pytest.mark.parametrize("cell, output, truncate", STATE_CASES)
def test_a_window_split_in_two_with_carried_state_scores_as_one(cell, output, truncate):
    model = make_model(cell=cell, output=output, bptt_truncate=truncate)
    rng = np.random.default_rng(11)
    x, y, mask = random_batch(rng, 12, [9, 9, 9])
    resets = np.zeros(x.shape)
    resets[2, 1] = 1
    whole, whole_state = model.token_log_probs(x, y, mask, resets=resets, return_state=True)
    first, carried = model.token_log_probs(x[:4], y[:4], mask[:4], resets=resets[:4], return_state=True)
    second, final = model.token_log_probs(x[4:], y[4:], mask[4:], state=carried, resets=resets[4:], return_state=True)
    np.testing.assert_allclose(np.concatenate([first, second]), whole, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(final, whole_state, rtol=1e-12, atol=1e-14)
    loss_1, count_1, grads_1, state_1 = model.loss_and_grads(x[:4], y[:4], mask[:4], resets=resets[:4], return_state=True)
    loss_2, count_2, grads_2, _ = model.loss_and_grads(x[4:], y[4:], mask[4:], state=state_1, resets=resets[4:],
                                                        return_state=True)
    loss, count = model.loss(x, y, mask, resets=resets)
    np.testing.assert_allclose(loss_1 + loss_2, loss, rtol=1e-12)
    assert count_1 + count_2 == count == 27
    # The output layer reads the same hidden states, so its gradients add up exactly; the recurrent
    # ones do too once every row starts a document at the cut (no gradient crosses a reset).
    _, _, grads = model.loss_and_grads(x, y, mask, resets=resets)
    for name in model.output.init_params(np.random.default_rng(0), np.float64):
        np.testing.assert_allclose(_dense(grads_1)[name] + _dense(grads_2)[name], _dense(grads)[name], rtol=1e-10)
    cut = resets.copy()
    cut[4] = 1
    _, _, grads_cut = model.loss_and_grads(x, y, mask, resets=cut)
    _, _, grads_a = model.loss_and_grads(x[:4], y[:4], mask[:4], resets=cut[:4])
    _, _, grads_b = model.loss_and_grads(x[4:], y[4:], mask[4:], state=state_1, resets=cut[4:])
    for name in grads_cut:
        np.testing.assert_allclose(_dense(grads_a)[name] + _dense(grads_b)[name], _dense(grads_cut)[name],
                                   rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("cell, output, truncate", STATE_CASES)
def test_a_reset_is_a_fresh_start(cell, output, truncate):
    # Row 0 starts a document at step 3: from there it scores (and its gradients are) those of the
    # rest of the row on its own from a zero state, whatever came before and whatever state it was given.
    model = make_model(cell=cell, output=output, bptt_truncate=truncate)
    rng = np.random.default_rng(12)
    x, y, mask = random_batch(rng, 12, [8])
    state = rng.normal(0, 0.5, (1, model.cell.state_size))
    resets = np.zeros(x.shape)
    resets[3, 0] = 1
    log_probs = model.token_log_probs(x, y, mask, state=state, resets=resets)
    fresh = model.token_log_probs(x[3:], y[3:], mask[3:])
    np.testing.assert_allclose(log_probs[3:], fresh, rtol=1e-12, atol=1e-14)
    assert not np.allclose(log_probs[:3], model.token_log_probs(x[:3], y[:3], mask[:3]))  # the state was used
    _, _, grads = model.loss_and_grads(x, y, mask, state=state, resets=resets)
    _, _, before = model.loss_and_grads(x[:3], y[:3], mask[:3], state=state)
    _, _, after = model.loss_and_grads(x[3:], y[3:], mask[3:])
    for name in grads:
        np.testing.assert_allclose(_dense(before)[name] + _dense(after)[name], _dense(grads)[name], rtol=1e-10, atol=1e-13)


def test_bad_states_and_resets_are_refused():
    model = make_model(cell="lstm")
    x, y, mask = random_batch(np.random.default_rng(9), 12, [4, 2])
    with pytest.raises(RnnlmError, match="state"):
        model.loss(x, y, mask, state=np.zeros((2, 5)))
    with pytest.raises(RnnlmError, match="resets"):
        model.loss(x, y, mask, resets=np.zeros((4, 3)))


def test_the_softmax_shift_is_the_cauchy_schwarz_bound_of_every_row():
    # Regression: NumPy 2.4.6's strided in-place negative read other columns into the shift.
    model = make_model(vocab=17, hidden=6)
    h = np.random.default_rng(13).normal(0, 0.3, (10, 6))
    h_ext = model.output.shifted_inputs(np, model.params, h)
    row_norm = np.sqrt((np.asarray(model.params["V"]) ** 2).sum(axis=1).max())
    expected = -np.ceil(np.linalg.norm(h, axis=1) * row_norm + np.asarray(model.params["b_y"]).max())
    np.testing.assert_allclose(h_ext[:, 6], expected, rtol=1e-12)
    np.testing.assert_array_equal(h_ext[:, :6], h)
    assert np.all(h_ext[:, 7] == 1)
