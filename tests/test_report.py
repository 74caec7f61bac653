"""Report figures and tables from synthetic inputs (fast); the Snakemake report end to end (slow)."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml

from rnnlm import report
from rnnlm.data import Split
from rnnlm.io import RnnlmError
from rnnlm.vocab import Vocabulary
from workflow_runs import make_workdir, run_snakemake

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path, min_bytes=10_000):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    # A figure with axes, curves and text is tens of kB; an empty canvas is a few kB.
    assert len(data) > min_bytes


def train_log(rows=6):
    epochs = np.arange(1, rows + 1)
    valid = 6.0 - 0.2 * epochs
    valid[1::2] = np.nan  # evaluate_every=2 leaves gaps the plot must skip
    return pd.DataFrame(
        {"epoch": epochs, "examples_seen": epochs * 1000, "train_loss": 6.0 - 0.3 * epochs, "valid_loss": valid}
    )


def gradient_result(decay_trained, decay_initial, distances=21):
    k = np.arange(distances)

    def curve(decay, radius):
        return {
            "mean_norm": (2.0 * decay**k).tolist(),
            "pairs": [100] * distances,
            "decay_per_step": decay,
            "spectral_radius": radius,
            "spectral_norm": radius * 1.5,
        }

    return {
        "cell": "rnn",
        "activation": "tanh",
        "distance": k.tolist(),
        "trained": curve(decay_trained, 1.2),
        "initial": curve(decay_initial, 0.55),
    }


def test_loss_curves_png(tmp_path):
    path = tmp_path / "loss.png"
    report.plot_loss_curves(train_log(), "rnn", path, unigram_loss=6.5)
    assert_png(path)


def test_time_to_quality_plot_of_every_model_and_the_baseline(tmp_path):
    logs = {"rnn": train_log().assign(cpu_seconds=lambda log: 10.0 * log["epoch"]),
            "gru": train_log().assign(cpu_seconds=lambda log: 25.0 * log["epoch"])}
    path = tmp_path / "time_to_quality.png"
    report.plot_time_to_quality(logs, {"order": 3, "splits": {"valid": {"perplexity": 120.0}}}, path)
    assert_png(path)
    with pytest.raises(RnnlmError, match="cpu_seconds"):
        report.plot_time_to_quality({"rnn": train_log()}, {}, path)


def test_loss_plot_marks_best_epoch_averaging_and_learning_rate_changes(tmp_path):
    log = pd.DataFrame({"epoch": range(6), "examples_seen": [0, 100, 200, 300, 400, 500],
                        "train_loss": [np.nan, 5.5, 4.8, 4.6, 4.4, 4.3],
                        "valid_loss": [6.0, 5.0, 4.5, 4.7, 4.4, 4.6],
                        "learning_rate": [1.0, 1.0, 1.0, 0.5, 0.5, 0.25],
                        "averaged": [0, 0, 0, 0, 1, 1]})
    events = report.schedule_events(log)
    assert events["best"] == (400.0, 4.4, 4)
    assert events["averaging"] == (300.0, 3)
    assert events["learning_rate"] == [(200.0, 0.5), (400.0, 0.25)]
    fig = report.plot_loss_curves(log, "rnn", tmp_path / "loss.png")
    labels = [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
    assert "best: epoch 4, loss 4.400 (kept)" in labels
    assert "parameter averaging from epoch 4" in labels
    assert sum(label.startswith("learning rate lowered") for label in labels) == 1
    # A log without the newer columns (or without validation) still plots, with nothing to mark.
    plain = report.schedule_events(log.drop(columns=["learning_rate", "averaged"]).assign(valid_loss=np.nan))
    assert plain == {"best": None, "averaging": None, "learning_rate": []}


@pytest.mark.parametrize("value, shown", [
    (45838.0, "45,838"), (2631, "2,631"), (np.int64(7), "7"), (True, "yes"), (np.bool_(False), "no"),
    (68.04123, "68.04"), (0.5, "0.5"), (4.0, "4"), (0.00001234, "0.00001234"), (999.96, "1,000"),
    (None, "–"), (float("nan"), "–"),
])
def test_numbers_have_one_human_format(value, shown):
    assert report.format_number(value) == shown


def test_tables_show_no_scientific_notation_or_python_booleans():
    frame = pd.DataFrame({"statistic": ["tokens", "words", "lowercase", "coverage"],
                          "value": [45838.0, 2631, True, 0.9634]})
    page = report.html_table(frame)
    assert "45,838" in page and "2,631" in page and "yes" in page and "0.9634" in page
    assert "e+" not in page and "True" not in page


def test_train_log_without_required_column_is_refused(tmp_path):
    path = tmp_path / "train_log.csv"
    train_log().drop(columns="valid_loss").to_csv(path, index=False)
    with pytest.raises(RnnlmError, match="valid_loss"):
        report.read_train_log(path)


def test_perplexity_table_orders_models_and_adds_unigram(tmp_path):
    def metrics(loss):
        return {
            "splits": {
                split: {"perplexity": float(np.exp(loss + i)), "unigram_perplexity": 900.0 + i}
                for i, split in enumerate(report.SPLIT_NAMES)
            }
        }

    paths = {}
    for name, loss in (("worse", 5.0), ("better", 4.0)):
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(metrics(loss)))
    ngram_path, mixed_path = tmp_path / "kn3.json", tmp_path / "interpolation.json"
    ngram_path.write_text(json.dumps({"order": 3, "splits": {s: {"perplexity": 300.0 + i} for i, s in enumerate(report.SPLIT_NAMES)}}))
    mixed_path.write_text(json.dumps({"ngram_order": 3, "weight_rnn": 0.625, "splits": {
        "valid": {"interpolated_perplexity": 120.0}, "test": {"interpolated_perplexity": 130.0}}}))
    csv_path, html_path = tmp_path / "ppl.csv", tmp_path / "ppl.html"
    frame = report.build_perplexity_table(paths, csv_path, html_path, ngram_paths=[ngram_path],
                                          interpolation_paths={"better": mixed_path})
    # Ordered by validation perplexity: 120, e^5, 301, e^6, 901.
    assert list(frame["model"]) == ["better + 3-gram (RNN weight 0.62)", "better", "Kneser-Ney 3-gram", "worse",
                                    "unigram (add-one)"]
    table = pd.read_csv(csv_path)
    assert list(table["kind"]) == ["interpolated", "RNN", "baseline", "RNN", "baseline"]
    assert table.loc[1, "valid"] == pytest.approx(np.exp(5.0), rel=1e-5)
    assert table.loc[4, "test"] == pytest.approx(902.0)
    assert np.isnan(table.loc[0, "train"])  # the mixture has no train perplexity: the cell stays empty
    page = html_path.read_text()
    assert "valid perplexity" in page and "Kneser-Ney 3-gram" in page


def test_metrics_without_splits_are_refused():
    with pytest.raises(RnnlmError, match="splits"):
        report.metrics_rows({"rnn": {"loss": 1.0}})


def test_zipf_plot_and_corpus_page(tmp_path):
    words = ["SENTENCE_START", "SENTENCE_END", "UNKNOWN_TOKEN"] + [f"w{i}" for i in range(200)]
    vocab_path = tmp_path / "vocab.tsv"
    Vocabulary(words, [2, 2, 40] + list((5000 / np.arange(1, 201)).astype(int))).save(vocab_path)
    # Two sentences, 5 predicted tokens in all, 2 of them UNKNOWN_TOKEN (id 2).
    split = Split.from_ids(np.array([5, 2, 7, 2], dtype=np.int32), np.array([3, 1]))
    split_path = tmp_path / "valid.npz"
    split.save(split_path)
    stats_path = tmp_path / "stats.json"
    stats_path.write_text(json.dumps({"sentences": 2, "per_split": {"valid": {"tokens": 6}}, "sources": ["a", "b"]}))
    zipf_path, html_path = tmp_path / "zipf.png", tmp_path / "corpus.html"

    report.build_corpus_report(vocab_path, {"valid": split_path}, {"Index": stats_path}, zipf_path, html_path)

    assert_png(zipf_path)
    stats = report.split_statistics({"valid": split})
    assert stats.loc[0, "predicted tokens"] == 6
    assert stats.loc[0, "words"] == 4  # SENTENCE_END is not a word
    assert stats.loc[0, report.UNKNOWN_RATE_COLUMN] == pytest.approx(100 * 2 / 4)
    # The same definition as the index stage's data/stats.json.
    from rnnlm.data import _split_stats
    assert _split_stats(split)["unknown_rate"] * 100 == pytest.approx(stats.loc[0, report.UNKNOWN_RATE_COLUMN])
    page = html_path.read_text()
    assert "UNKNOWN_TOKEN rate" in page and "per_split.valid.tokens" in page and "2 entries" in page


def test_samples_page_sections_scores_and_escaping(tmp_path):
    path = tmp_path / "samples.html"
    text = ("# sampled sentences (t=1)\n# columns: text, tokens\nA <b> sentence.\ta <b> sentence .\n\n"
            "Another one.\tanother one .\n# beam search\n# columns: log_prob (natural log), text, tokens\n"
            "-4.2500\tThe end.\tthe end .\n")
    report.write_samples_page({"rnn": text}, path)
    page = path.read_text()
    assert "&lt;b&gt;" in page and page.count("<li ") == 3 and page.count("<ol>") == 2 and "columns" not in page
    assert "<h3>beam search</h3>" in page
    assert '<li title="the end .">The end. <span class="score">(log p = -4.2500)</span></li>' in page


def test_gradient_plot_and_summary(tmp_path):
    diagnostics = {"tanh": gradient_result(0.8, 0.4), "relu": gradient_result(0.9, 0.3)}
    # A curve that no sentence reaches to the end carries nulls; the plot must skip them.
    diagnostics["relu"]["initial"]["mean_norm"][-2:] = [None, None]
    png, page = tmp_path / "grad.png", tmp_path / "grad.html"
    for name, result in diagnostics.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(result))
    report.build_gradient_report({name: tmp_path / f"{name}.json" for name in diagnostics}, png, page)
    assert_png(png)
    summary = report.gradient_summary(diagnostics)
    assert list(summary["decay per step (trained)"]) == [0.8, 0.9]
    assert list(summary["ρ(W) (initial)"]) == [0.55, 0.55]
    text = page.read_text()
    assert "spectral radius" in text
    # The statement under the table is this run's: 0.55 -> 1.2 crosses 1.
    assert "tanh: ρ(W) grew from 0.55 (below 1) at initialisation to 1.20 (at or above 1) after training" in text
    below = gradient_result(0.8, 0.4)
    below["trained"]["spectral_radius"] = 0.79
    assert report.spectral_radius_statements({"rnn": below}) == [
        "rnn: ρ(W) grew from 0.55 (below 1) at initialisation to 0.79 (below 1) after training, so the powers "
        "of W shrink and the gradient must vanish over long distances."]


# --- end to end: a tiny pipeline run, then `snakemake --report` ----------------------------

TINY_MODEL = {"tiny": {"hidden_size": 8, "epochs": 2, "batch_size": 16, "learning_rate": 0.5, "seed": 3}}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, snakemake_env):
    """The whole workflow on the shared tiny corpus with one 8-unit model: seconds, not minutes."""
    workdir = make_workdir(tmp_path_factory.mktemp("report_run"), models=TINY_MODEL)
    run_snakemake(workdir, "--cores", "2", env=snakemake_env)
    return workdir


@pytest.mark.slow
def test_snakemake_report_is_self_contained(tiny_run, snakemake_env):
    output = run_snakemake(tiny_run, "--report", "report.html", env=snakemake_env)
    # docutils reports caption mistakes (e.g. a stray |x| read as a substitution) without failing.
    assert "(ERROR/" not in output and "(WARNING/" not in output
    page = (tiny_run / "report.html").read_text(encoding="utf-8")
    for category in ("1. Corpus and vocabulary", "2. Training", "3. Perplexity", "4. Generated sentences",
                     "5. Vanishing gradient"):
        assert category in page
    # The introduction names each model's optimizer from the config, not one for all.
    assert "tiny" in page and ("SGD" in page or "Adam" in page) and "minibatch SGD" not in page
    for artifact in ("perplexity.html", "samples.html", "corpus.html", "gradient_norms.html"):
        assert artifact in page
    # Self-contained: every figure is embedded as a data URI and nothing is loaded from elsewhere.
    for figure in ("gradient_norms.png", "zipf.png", "tiny.png", "time_to_quality.png"):
        assert f"data:image/png;charset=utf8;filename={figure};base64," in page
    assert not re.search(r"<(script|img|link)\b[^>]*\b(src|href)=\"(?!data:)", page)


@pytest.mark.slow
def test_tiny_run_diagnostics_and_tables(tiny_run):
    config = yaml.safe_load((tiny_run / "config.yaml").read_text())["diagnostics"]
    result = json.loads((tiny_run / "results/diagnostics/tiny/gradient_norms.json").read_text())
    assert result["distance"] == list(range(config["max_distance"] + 1))
    assert result["sentences"] <= config["max_sentences"] and result["seed"] == TINY_MODEL["tiny"]["seed"]
    for state in ("initial", "trained"):
        assert result[state]["mean_norm"][0] > 0 and result[state]["spectral_radius"] > 0
    table = pd.read_csv(tiny_run / "results/report/perplexity.csv")
    assert {"tiny", "unigram (add-one)"} <= set(table["model"])
    assert (table[["train", "valid", "test"]].dropna() > 1).all().all()


def test_log_axes_have_plain_tick_labels():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot([0.03, 30], [250, 55])
    ax.set_xscale("log")
    ax.set_yscale("log")
    report.plain_log_ticks(ax.xaxis)
    report.plain_log_ticks(ax.yaxis)
    fig.canvas.draw()
    labels = {text.get_text() for axis in (ax.xaxis, ax.yaxis)
              for text in axis.get_ticklabels(which="both") if text.get_text()}
    assert {"60", "100", "200", "0.1", "1", "10"} <= labels
    assert not any("10^" in label or "×" in label or "$" in label for label in labels)
