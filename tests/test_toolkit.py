"""The modern word-LM toolkit: an embedding size of its own, tied input/output embeddings, stacked
layers with dropout between them, locked (variational) and word-type (embedding) dropout."""

import numpy as np
import pytest

from rnnlm import gradcheck
from rnnlm.backend import get_backend
from rnnlm.io import RnnlmError
from rnnlm.model import RNNLM, ModelConfig, SparseRows
from rnnlm.optim import Adam

CPU = get_backend("cpu")
VOCAB = ["SENTENCE_START", "SENTENCE_END", "UNKNOWN_TOKEN"] + [f"w{i}" for i in range(12)]
CELLS = ["rnn", "gru", "lstm"]
OUTPUTS = ["full", "class"]
# (name, config overrides); hidden_size 5 everywhere.
TOOLKITS = [
    ("embedding", {"embedding_size": 3}),
    ("tied", {"embedding_size": 5, "tie_embeddings": True}),
    ("stacked", {"num_layers": 3}),
    ("tied-stacked", {"embedding_size": 5, "tie_embeddings": True, "num_layers": 2}),
]
ALL_DROPOUTS = {"dropout": 0.4, "input_dropout": 0.3, "layer_dropout": 0.3, "embedding_dropout": 0.3}


def make_model(vocab=15, hidden=5, seed=3, **overrides):
    return RNNLM(ModelConfig(vocab_size=vocab, hidden_size=hidden, dtype="float64", **overrides), CPU, seed=seed)


def host_params(model):
    return {name: np.array(value) for name, value in model.params.items()}


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("name, overrides", TOOLKITS, ids=[name for name, _ in TOOLKITS])
def test_every_new_parameter_matches_central_differences(name, overrides, cell, output):
    model = make_model(cell=cell, output=output, **overrides)
    x, y, mask = gradcheck.random_batch(np.random.default_rng(3), 15, [6, 3, 5])
    errors = gradcheck.gradient_check(model, x, y, mask)
    assert set(errors) == set(model.params)
    assert max(errors.values()) < gradcheck.DEFAULT_TOLERANCE, errors


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("locked", [False, True])
def test_every_dropout_path_matches_central_differences(locked, cell, output):
    model = make_model(cell=cell, output=output, embedding_size=5, tie_embeddings=True, num_layers=2,
                       locked_dropout=locked, **ALL_DROPOUTS)
    x, y, mask = gradcheck.random_batch(np.random.default_rng(4), 15, [6, 3, 5])
    masks = model.dropout_masks(CPU.rng(5), x.shape)
    errors = gradcheck.gradient_check(model, x, y, mask, dropout=masks)
    assert max(errors.values()) < gradcheck.DEFAULT_TOLERANCE, errors


def test_one_hot_input_with_word_dropout_and_truncation_matches_central_differences():
    model = make_model(cell="gru", bptt_truncate=2, embedding_dropout=0.4, input_dropout=0.2, locked_dropout=True)
    x, y, mask = gradcheck.random_batch(np.random.default_rng(6), 15, [6, 3, 5])
    masks = model.dropout_masks(CPU.rng(6), x.shape)
    errors = gradcheck.gradient_check(model, x, y, mask, dropout=masks)
    assert max(errors.values()) < gradcheck.DEFAULT_TOLERANCE, errors


def test_parameter_names_and_shapes():
    assert set(make_model().params) == {"U", "W", "b_h", "V", "b_y"}
    stacked = make_model(cell="gru", embedding_size=4, num_layers=3, output="class")
    shapes = {name: tuple(value.shape) for name, value in stacked.params.items()}
    assert shapes["E"] == (15, 4) and shapes["U"] == (15, 4) and shapes["W"] == (15, 5)
    assert shapes["U1"] == shapes["U2"] == (15, 5) and shapes["W2"] == (15, 5) and shapes["b_h2"] == (15,)
    tied = make_model(embedding_size=5, tie_embeddings=True)
    assert "E" not in tied.params and tied.params["U"].shape == (5, 5)
    assert stacked.initial_state(2).shape == (2, 3 * 5)
    assert make_model(cell="lstm", num_layers=2).initial_state(3).shape == (3, 2 * 2 * 5)


def test_bad_toolkit_configs_are_refused_with_the_fix():
    with pytest.raises(RnnlmError, match="set embedding_size: 5"):
        ModelConfig(vocab_size=10, hidden_size=5, tie_embeddings=True)
    with pytest.raises(RnnlmError, match="set embedding_size: 5"):
        ModelConfig(vocab_size=10, hidden_size=5, embedding_size=4, tie_embeddings=True)
    with pytest.raises(RnnlmError, match="num_layers >= 2"):
        ModelConfig(vocab_size=10, layer_dropout=0.2)
    with pytest.raises(RnnlmError, match="bptt_truncate"):
        ModelConfig(vocab_size=10, num_layers=2, bptt_truncate=3)
    for key, value in (("num_layers", 0), ("embedding_size", -1), ("embedding_dropout", 1.0),
                       ("locked_dropout", 1), ("tie_embeddings", "yes")):
        with pytest.raises(RnnlmError, match=key):
            ModelConfig(vocab_size=10, **{key: value})


@pytest.mark.parametrize("cell, output", [("rnn", "full"), ("gru", "class"), ("lstm", "full")])
def test_step_by_step_scoring_matches_batch_scoring(cell, output):
    model = make_model(cell=cell, output=output, embedding_size=5, tie_embeddings=True, num_layers=3)
    x, y, mask = gradcheck.random_batch(np.random.default_rng(6), 15, [5, 3])
    log_probs = model.token_log_probs(x, y, mask)
    state = model.initial_state(2)
    for t in range(x.shape[0]):
        step_log_probs, state = model.step(x[t], state)
        np.testing.assert_allclose(np.exp(step_log_probs).sum(axis=1), 1.0, rtol=1e-12)
        np.testing.assert_allclose(log_probs[t], step_log_probs[np.arange(2), y[t]] * mask[t], rtol=1e-10, atol=1e-12)
    # the stacked state is every layer's final state, side by side
    cache = model.forward_cache(x[:1], np.ones((1, 2)))
    _, first_state = model.step(x[0], model.initial_state(2))
    np.testing.assert_allclose(first_state, np.concatenate([layer.states[1] for layer in cache.layers], axis=1))


def test_layers_run_on_their_initial_states():
    """A given stacked initial state reaches every layer (the diagnostics and state carrying need it)."""
    model = make_model(cell="lstm", num_layers=2)
    x, y, mask = gradcheck.random_batch(np.random.default_rng(1), 15, [4, 4])
    state = np.random.default_rng(2).uniform(-0.5, 0.5, model.initial_state(2).shape)
    cache = model.forward_cache(x, mask, state=state)
    size = model.cell.state_size
    for layer, layer_cache in enumerate(cache.layers):
        np.testing.assert_array_equal(layer_cache.states[0], state[:, layer * size : (layer + 1) * size])
    assert cache.states is cache.layers[-1].states


def test_tied_embedding_is_the_output_word_matrix():
    model = make_model(embedding_size=5, tie_embeddings=True)
    x, y, mask = gradcheck.random_batch(np.random.default_rng(2), 15, [5, 4])
    before = model.loss(x, y, mask)[0]
    model.params["V"][x[0, 0]] += 0.5  # moves the input of the first token and the output
    changed = model.forward_cache(x, mask).states[1, 0]
    model.params["V"][x[0, 0]] -= 0.5
    assert not np.allclose(changed, model.forward_cache(x, mask).states[1, 0])
    assert model.loss(x, y, mask)[0] == pytest.approx(before, rel=1e-12)


@pytest.mark.parametrize("output, chunk_rows", [("full", None), ("full", 3), ("class", None)])
@pytest.mark.parametrize("tied", [False, True])
def test_sparse_fused_and_kept_steps_match_the_dense_update(output, chunk_rows, tied):
    """The trainer's unclipped (fused output step) and clipped (kept buffers) SGD steps equal the
    dense gradient applied, for an embedding table and for the tied V (both its uses)."""
    x, y, mask = gradcheck.random_batch(np.random.default_rng(9), 30, [8, 5, 7])
    overrides = {"embedding_size": 5, "tie_embeddings": tied, "num_layers": 2, "output": output}
    dense, fused, kept = (make_model(vocab=30, **overrides) for _ in range(3))
    if chunk_rows:
        fused.output.chunk_rows = kept.output.chunk_rows = chunk_rows
    step = -0.3
    loss, count, grads = dense.loss_and_grads(x, y, mask)
    expected = {name: host_params(dense)[name] + step * np.asarray(grads[name]) for name in grads}
    expected_norm = sum(float((np.asarray(grad) ** 2).sum()) for grad in grads.values())
    word = "V" if tied else "E"
    fused_loss, fused_count, remaining = fused.loss_and_grads(x, y, mask, sparse_input=True, output_step=step)
    assert (fused_loss, fused_count) == pytest.approx((loss, count), rel=1e-12)
    assert isinstance(remaining[word], SparseRows)
    np.testing.assert_array_equal(remaining[word].indices, np.unique(x[mask > 0]))
    fused.apply_update(remaining, step)
    for _ in range(2):
        kept_loss, _, kept_grads = kept.loss_and_grads(x, y, mask, sparse_input=True, keep_output_gradients=True)
    assert kept.gradient_squared_norm(kept_grads) == pytest.approx(expected_norm, rel=1e-12)
    kept.apply_update(kept_grads, step)
    for model in (fused, kept):
        for name, value in expected.items():
            np.testing.assert_allclose(host_params(model)[name], value, rtol=1e-12, atol=1e-14, err_msg=name)


@pytest.mark.parametrize("tied", [False, True])
def test_adam_on_the_embedding_matches_dense_adam_on_the_first_step(tied):
    """The lazy (sparse) Adam step of E, and Adam on the tied V (output and input sides summed),
    equal a dense Adam step on the first update (zero moments: absent words do not move)."""
    x, y, mask = gradcheck.random_batch(np.random.default_rng(3), 30, [8, 5])
    overrides = {"embedding_size": 5, "tie_embeddings": tied, "output": "class"}
    lazy, dense = make_model(vocab=30, **overrides), make_model(vocab=30, **overrides)
    _, count, sparse_grads = lazy.loss_and_grads(x, y, mask, sparse_input=True)
    _, _, dense_grads = dense.loss_and_grads(x, y, mask)
    Adam(lazy.params, np).update(lazy.params, sparse_grads, 1.0 / count, 0.01)
    Adam(dense.params, np).update(dense.params, dense_grads, 1.0 / count, 0.01)
    for name in dense.params:
        np.testing.assert_allclose(lazy.params[name], dense.params[name], rtol=1e-12, atol=1e-14, err_msg=name)


def test_locked_masks_repeat_over_time_and_word_masks_drop_whole_words():
    model = make_model(cell="gru", num_layers=2, locked_dropout=True, **ALL_DROPOUTS)
    masks = model.dropout_masks(CPU.rng(7), (6, 40))
    for mask in (masks.inputs, masks.hidden, masks.layers[0]):
        assert mask.shape[:2] == (6, 40)
        assert (mask == mask[:1]).all()
        assert not (mask[:, :1] == mask).all()  # sequences differ
    assert masks.words.shape == (15,)
    unlocked = make_model(cell="gru", num_layers=2, **ALL_DROPOUTS).dropout_masks(CPU.rng(7), (6, 40))
    assert not (unlocked.hidden == unlocked.hidden[:1]).all()
    # a dropped word type gives every one of its tokens the input b_h alone
    model = make_model(embedding_size=3, embedding_dropout=0.5)
    masks = model.dropout_masks(CPU.rng(1), (4, 3))
    dropped, kept = np.flatnonzero(masks.words == 0)[0], np.flatnonzero(masks.words)[0]
    x = np.array([[dropped, kept, dropped]] * 4)
    inputs = model._input_projection(x, masks)
    np.testing.assert_array_equal(inputs[:, [0, 2]], np.broadcast_to(model.params["b_h"], (4, 2, 5)))
    assert not np.allclose(inputs[:, 1], model.params["b_h"])


@pytest.mark.parametrize("name, overrides", TOOLKITS, ids=[name for name, _ in TOOLKITS])
def test_save_and_load_round_trip(tmp_path, name, overrides):
    model = make_model(cell="lstm", output="class", num_classes=4, **overrides)
    path = tmp_path / "params.npz"
    model.save(path, VOCAB, {})
    loaded, _, _ = RNNLM.load(path, CPU)
    assert loaded.config == model.config and set(loaded.params) == set(model.params)
    x, y, mask = gradcheck.random_batch(np.random.default_rng(0), 15, [4, 2])
    np.testing.assert_array_equal(loaded.token_log_probs(x, y, mask), model.token_log_probs(x, y, mask))


def test_cli_checks_the_toolkit():
    assert gradcheck.main(["--cell", "gru", "--output", "class", "--hidden-size", "5", "--embedding-size", "5",
                           "--tie-embeddings", "--num-layers", "2", "--layer-dropout", "0.3", "--dropout", "0.3",
                           "--embedding-dropout", "0.2", "--locked-dropout", "--max-entries", "6"]) == 0


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("cell", CELLS)
def test_stacked_carried_state_and_resets_match_central_differences(cell, output):
    """Document mode on a tied stack: a carried (fixed) initial state of every layer and document
    starts mid-window; the gradients still match, and the state and resets matter."""
    model = make_model(cell=cell, output=output, embedding_size=5, tie_embeddings=True, num_layers=2, seed=4)
    rng = np.random.default_rng(4)
    x, y, mask = gradcheck.random_batch(rng, 15, [6, 6, 4])
    state = rng.normal(0, 0.5, model.initial_state(3).shape)
    resets = np.zeros(x.shape)
    resets[3, 0] = resets[1, 2] = 1
    errors = gradcheck.gradient_check(model, x, y, mask, state=state, resets=resets)
    assert max(errors.values()) < gradcheck.DEFAULT_TOLERANCE, errors
    assert model.loss(x, y, mask, state=state, resets=resets)[0] != pytest.approx(model.loss(x, y, mask)[0])


@pytest.mark.parametrize("cell", CELLS)
def test_stacked_state_carries_across_windows_and_resets_zero_every_layer(cell):
    model = make_model(cell=cell, num_layers=3, embedding_size=4)
    x, y, mask = gradcheck.random_batch(np.random.default_rng(5), 15, [8, 8])
    whole = model.token_log_probs(x, y, mask)
    first, state = model.token_log_probs(x[:3], y[:3], mask[:3], return_state=True)
    assert state.shape == model.initial_state(2).shape
    second = model.token_log_probs(x[3:], y[3:], mask[3:], state=state)
    np.testing.assert_allclose(np.concatenate([first, second]), whole, rtol=1e-12, atol=1e-14)
    _, _, _, trained_state = model.loss_and_grads(x[:3], y[:3], mask[:3], return_state=True)
    np.testing.assert_array_equal(trained_state, state)
    # a document starting at step 3 reads what a fresh run from zeros reads, in every layer
    resets = np.zeros(x.shape)
    resets[3] = 1
    reset = model.token_log_probs(x, y, mask, resets=resets)
    np.testing.assert_allclose(reset[3:], model.token_log_probs(x[3:], y[3:], mask[3:]), rtol=1e-12, atol=1e-14)
    with pytest.raises(RnnlmError, match="initial_state"):
        model.loss(x, y, mask, state=np.zeros((2, model.cell.state_size)))


@pytest.mark.parametrize("cell, output", [("gru", "class"), ("lstm", "full")])
def test_stacked_stream_scores_equal_a_token_by_token_reference(cell, output):
    from rnnlm import streams
    from test_streams import VOCAB as STREAM_VOCAB, documents_split, step_by_step

    config = ModelConfig(vocab_size=STREAM_VOCAB, hidden_size=6, cell=cell, output=output, dtype="float64",
                         context="document", embedding_size=6, tie_embeddings=True, num_layers=2)
    model = RNNLM(config, CPU, seed=5)
    split = documents_split(4)
    scores = streams.token_log_probs(model, split, rows=3, window=5)
    np.testing.assert_allclose(scores, step_by_step(model, split), rtol=1e-10, atol=1e-12)
