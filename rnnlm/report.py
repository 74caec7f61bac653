"""Figures and tables for `snakemake --report`: loss curves, perplexities, samples, corpus statistics
and the vanishing-gradient curves.

Plots use matplotlib's object-oriented API on the Agg canvas (no display, no pyplot global state), so
they render the same on a headless cluster node as on a laptop. Every file is written atomically.
"""

from __future__ import annotations

import html
import math
import os
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, StrMethodFormatter

from rnnlm.data import SPLIT_NAMES, Split
from rnnlm.generate import SAMPLES_COLUMNS_PREFIX
from rnnlm.interpolate import SCORED_SPLITS
from rnnlm.io import RnnlmError, atomic_path, printable, read_json, write_text
from rnnlm.vocab import SENTENCE_END_ID, UNKNOWN_ID, Vocabulary

TRAIN_LOG_COLUMNS = ("epoch", "examples_seen", "train_loss", "valid_loss")

_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.4em; }
table { border-collapse: collapse; margin: 0.5em 0 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }
th { background: #f2f2f2; max-width: 9em; } td.text, th:first-child { text-align: left; }
table { max-width: 100%; } td.text { overflow-wrap: anywhere; }
p.note { color: #555; max-width: 60em; }
ol li { margin: 0.25em 0; font-family: Georgia, serif; }
span.score { color: #777; font-family: sans-serif; font-size: 0.85em; }
h3 { font-size: 0.95em; color: #444; font-weight: normal; font-style: italic; }
"""



def save_figure(fig: Figure, path: str | os.PathLike) -> None:
    """Write `fig` as PNG atomically."""
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def html_page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n"
    )


def format_number(value) -> str:
    """One human format for every table cell: counts and values from 1,000 up as integers with
    thousands separators, smaller values with 4 significant digits, never in scientific notation;
    true/false as yes/no; a missing value as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            return "∞" if value > 0 else "−∞"
        shown = np.format_float_positional(value, precision=4, unique=False, fractional=False, trim="-")
        # Rounding can carry into the thousands (999.96 -> 1000): those get separators too.
        return f"{value:,.0f}" if abs(float(shown)) >= 1000 else shown
    return str(value)


def plain_log_ticks(axis) -> None:
    """Tick labels of a log axis as plain numbers (60, 100, 200, 300) instead of 6×10¹, 10², ...;
    call after plotting. Within about a decade every minor tick is labelled, else those at 2, 3, 5."""
    formatter = FuncFormatter(lambda value, _: f"{value:,.0f}" if value >= 1 else f"{value:g}")
    low, high = sorted(axis.get_view_interval())
    shown = "123456789" if low > 0 and high / low < 30 else "1235"
    axis.set_major_formatter(formatter)
    axis.set_minor_formatter(FuncFormatter(
        lambda value, _: formatter(value) if f"{value:.0e}"[0] in shown else ""))


def html_table(frame: pd.DataFrame) -> str:
    header = "".join(f"<th>{html.escape(str(column))}</th>" for column in frame.columns)
    rows = []
    for record in frame.itertuples(index=False):
        cells = "".join(
            f"<td class=\"text\">{html.escape(value)}</td>" if isinstance(value, str)
            else f"<td>{html.escape(format_number(value))}</td>"
            for value in record
        )
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


# --- training curves -------------------------------------------------------------------------


def read_train_log(path: str | os.PathLike) -> pd.DataFrame:
    try:
        log = pd.read_csv(path)
    except FileNotFoundError:
        raise RnnlmError(f"{path}: training log not found; train the model first") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise RnnlmError(f"{path}: not a readable CSV training log ({exc}); re-run training") from None
    missing = [column for column in TRAIN_LOG_COLUMNS if column not in log.columns]
    if missing:
        raise RnnlmError(f"{path}: training log lacks columns {missing}; re-run training with this version")
    if log.empty:
        raise RnnlmError(f"{path}: training log has no rows; training stopped before its first epoch")
    return log


def schedule_events(log: pd.DataFrame) -> dict:
    """What the loss plot marks, from the training log: the best measured epoch (the parameters kept),
    where the parameter average began (`averaged` column) and each learning-rate change; positions
    are sentences seen. A change decided at a measurement shows from the next row on, so it is placed
    at the measurement's row."""
    seen = log["examples_seen"].to_numpy(dtype=float)
    events: dict = {"best": None, "averaging": None, "learning_rate": []}
    valid = pd.to_numeric(log["valid_loss"], errors="coerce").to_numpy(dtype=float)
    if np.isfinite(valid).any():
        best = int(np.nanargmin(valid))  # the first of equal losses, as training keeps it
        events["best"] = (seen[best], valid[best], int(log["epoch"].iloc[best]))
    if "averaged" in log.columns:
        averaged = np.flatnonzero(pd.to_numeric(log["averaged"], errors="coerce").fillna(0).to_numpy() > 0)
        if averaged.size and averaged[0] > 0:
            events["averaging"] = (seen[averaged[0] - 1], int(log["epoch"].iloc[averaged[0] - 1]))
    if "learning_rate" in log.columns:
        rates = pd.to_numeric(log["learning_rate"], errors="coerce").to_numpy(dtype=float)
        for row in np.flatnonzero(rates[1:] != rates[:-1]):
            events["learning_rate"].append((seen[row], rates[row + 1]))
    return events


def plot_loss_curves(
    log: pd.DataFrame, model_name: str, path: str | os.PathLike, unigram_loss: float | None = None
) -> Figure:
    """Training and validation loss (nats per token) against the number of training sentences seen,
    with the best epoch, the start of parameter averaging and learning-rate changes marked."""
    fig = Figure(figsize=(7.0, 4.2), layout="constrained")
    ax = fig.add_subplot()
    seen = log["examples_seen"].to_numpy(dtype=float)
    for column, label, style in (
        ("train_loss", "training (mean over the epoch)", dict(color="tab:blue", marker="o")),
        ("valid_loss", "validation (after the epoch)", dict(color="tab:orange", marker="s")),
    ):
        values = pd.to_numeric(log[column], errors="coerce").to_numpy(dtype=float)
        measured = np.isfinite(values)
        if measured.any():
            ax.plot(seen[measured], values[measured], label=label, markersize=4, linewidth=1.6, **style)
    if unigram_loss is not None and math.isfinite(unigram_loss):
        ax.axhline(unigram_loss, color="gray", linestyle="--", linewidth=1, label="unigram model (valid)")
    events = schedule_events(log)
    if events["best"] is not None:
        x, loss, epoch = events["best"]
        ax.plot([x], [loss], marker="*", markersize=15, color="tab:red", linestyle="none",
                label=f"best: epoch {epoch}, loss {loss:.3f} (kept)")
    if events["averaging"] is not None:
        x, epoch = events["averaging"]
        ax.axvline(x, color="tab:green", linestyle="-.", linewidth=1.2,
                   label=f"parameter averaging from epoch {epoch + 1}")
    for index, (x, rate) in enumerate(events["learning_rate"]):
        ax.axvline(x, color="tab:purple", linestyle=":", linewidth=1.2,
                   label="learning rate lowered (new rate at the top)" if index == 0 else None)
        ax.annotate(f"lr {rate:g}", (x, 1.0), xycoords=("data", "axes fraction"), xytext=(2, -10),
                    textcoords="offset points", fontsize=8, color="tab:purple")
    ax.set_xlabel("training sentences seen")
    ax.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.set_ylabel("cross-entropy loss (nats per token)")
    ax.set_title(f"Loss during training: model '{model_name}'")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)
    return fig


# --- perplexity table ------------------------------------------------------------------------


def perplexity_table(rows: Iterable[Mapping]) -> pd.DataFrame:
    """One row per language model: `model`, `kind`, and perplexity per split (NaN where not measured)."""
    frame = pd.DataFrame(list(rows))
    if frame.empty:
        raise RnnlmError("no models to tabulate; add at least one entry under `models:` in config.yaml")
    for split in SPLIT_NAMES:
        if split not in frame.columns:
            frame[split] = np.nan
    frame = frame[["model", "kind", *SPLIT_NAMES]]
    # Best validation perplexity first: the order a reader compares models in.
    return frame.sort_values(["valid", "model"], na_position="last", kind="stable").reset_index(drop=True)


def write_perplexity_table(frame: pd.DataFrame, csv_path: str | os.PathLike, html_path: str | os.PathLike) -> None:
    with atomic_path(csv_path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")
    shown = frame.rename(columns={split: f"{split} perplexity" for split in SPLIT_NAMES})
    note = (
        "<p class=\"note\">Perplexity is exp(mean cross-entropy per predicted token, SENTENCE_END included); "
        "lower is better. The unigram row predicts every word by its training frequency alone and sets the "
        "scale: a model that learned nothing from context scores about that. Kneser-Ney rows are the n-gram "
        "baseline; 'interpolated' rows mix an RNN with it per token, the weight tuned on the validation split "
        "(so their test column is the fair comparison).</p>"
    )
    write_text(html_path, html_page("Perplexity per model and split", html_table(shown) + note))


# --- samples ---------------------------------------------------------------------------------


def samples_html(text: str) -> str:
    """samples.txt (see rnnlm.generate.format_samples) as HTML: a '# ' line opens a section, the
    '# columns:' line is left out, each sentence shows its text (its tokens on hover) and its score.
    Sentence lines always hold a tab, section lines never: a sentence starting with '#' stays a sentence."""
    parts, items = [], []

    def close_list():
        if items:
            parts.append(f"<ol>{''.join(items)}</ol>")
            items.clear()

    for line in text.splitlines():
        section = "\t" not in line
        if not line.strip() or section and line.startswith(SAMPLES_COLUMNS_PREFIX):
            continue
        if section and line.startswith("#"):
            close_list()
            parts.append(f"<h3>{html.escape(line.lstrip('# '))}</h3>")
            continue
        fields = line.split("\t")
        score = f" <span class=\"score\">(log p = {html.escape(fields[0])})</span>" if len(fields) == 3 else ""
        sentence, tokens = (fields[-2], fields[-1]) if len(fields) > 1 else (fields[0], fields[0])
        items.append(f"<li title=\"{html.escape(tokens)}\">{html.escape(sentence)}{score}</li>")
    close_list()
    return "\n".join(parts)


def write_samples_page(samples_by_model: Mapping[str, str], path: str | os.PathLike) -> None:
    """One section per model with the sentences its generate stage wrote."""
    sections = [f"<h2>model '{html.escape(name)}'</h2>\n{samples_html(text)}" for name, text in samples_by_model.items()]
    write_text(path, html_page("Generated sentences", "\n".join(sections)))


# --- corpus and vocabulary -------------------------------------------------------------------


UNKNOWN_RATE_COLUMN = "UNKNOWN_TOKEN rate (% of words)"


def split_statistics(splits: Mapping[str, Split]) -> pd.DataFrame:
    """Documents, sentences, predicted tokens and the UNKNOWN_TOKEN rate of each split's targets. The
    rate has one definition everywhere: the share of the words (SENTENCE_END not counted) that are
    UNKNOWN_TOKEN, as data/stats.json's `unknown_rate` and the README give it."""
    rows = []
    for name, split in splits.items():
        targets = np.asarray(split.y)
        words = int(np.count_nonzero(targets != SENTENCE_END_ID))
        unknown = int(np.count_nonzero(targets == UNKNOWN_ID))
        rows.append(
            {
                "split": name,
                "documents": split.num_documents,
                "sentences": len(split),
                "predicted tokens": int(targets.size),
                "words": words,
                "UNKNOWN_TOKEN words": unknown,
                UNKNOWN_RATE_COLUMN: 100.0 * unknown / max(words, 1),
            }
        )
    return pd.DataFrame(rows)


# Longest word drawn on a plot; a longer one is shortened with an ellipsis.
PLOT_LABEL_CHARACTERS = 40


def plot_label(word: str) -> str:
    """A corpus word as a plot label: control characters visible, at most PLOT_LABEL_CHARACTERS long."""
    word = printable(word)
    return word if len(word) <= PLOT_LABEL_CHARACTERS else word[: PLOT_LABEL_CHARACTERS - 1] + "…"


def plot_zipf(vocab: Vocabulary, path: str | os.PathLike) -> None:
    """Rank-frequency plot of the kept words on log-log axes, with a 1/rank reference line."""
    counts = vocab.counts[UNKNOWN_ID + 1:].astype(float)  # ids are already in descending count order
    if counts.size == 0 or counts[0] <= 0:
        raise RnnlmError("the vocabulary holds no words with counts; check the corpus and the vocab stage")
    ranks = np.arange(1, counts.size + 1)
    unknown = int(vocab.counts[UNKNOWN_ID])
    unknown_share = 100.0 * unknown / (unknown + counts.sum())
    fig = Figure(figsize=(7.0, 4.4), layout="constrained")
    ax = fig.add_subplot()
    ax.loglog(ranks, counts, color="tab:blue", linewidth=1.8, label=f"kept words ({counts.size:,})")
    ax.loglog(ranks, counts[0] / ranks, color="gray", linestyle="--", linewidth=1, label="Zipf's law: count ∝ 1/rank")
    ax.plot([], [], " ", label=f"UNKNOWN_TOKEN: {unknown:,} words ({unknown_share:.2f}% of the corpus's words)")
    for rank in range(1, min(3, counts.size) + 1):
        # Corpus text, drawn literally: `$...$` would be parsed as mathtext (and can fail to parse).
        ax.annotate(
            f"“{plot_label(vocab.words[UNKNOWN_ID + rank])}”", (rank, counts[rank - 1]), textcoords="offset points",
            xytext=(5, 4), fontsize=9, parse_math=False,
        )
    ax.set_ylim(top=counts[0] * 3)  # headroom for the word labels
    ax.set_xlabel("frequency rank of the word (1 = most frequent)")
    ax.set_ylabel("occurrences in the corpus")
    ax.set_title("Rank-frequency (Zipf) plot of the vocabulary")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend()
    save_figure(fig, path)


def flatten_stats(stats: Mapping, prefix: str = "") -> list[tuple[str, object]]:
    """Nested stats JSON -> (dotted key, scalar) pairs, lists shown by their length."""
    pairs: list[tuple[str, object]] = []
    for key, value in stats.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            pairs.extend(flatten_stats(value, prefix=f"{name}."))
        elif isinstance(value, list):
            pairs.append((name, f"{len(value)} entries"))
        else:
            pairs.append((name, value))
    return pairs


def write_corpus_page(
    split_stats: pd.DataFrame, stage_stats: Mapping[str, Mapping], path: str | os.PathLike
) -> None:
    """Split sizes and UNKNOWN_TOKEN rates first, then every number each data stage recorded."""
    body = [
        "<h2>Index matrices per split</h2>",
        html_table(split_stats),
        "<p class=\"note\">The UNKNOWN_TOKEN rate is the share of the words (predicted tokens but "
        "SENTENCE_END) that fall outside the vocabulary, as data/stats.json's unknown_rate; the vocabulary is built from the train split only (a valid or test word never seen in training is "
        "UNKNOWN_TOKEN and still scored); a larger <code>vocabulary_size</code> lowers it at the cost of a larger "
        "output layer.</p>",
    ]
    for stage, stats in stage_stats.items():
        frame = pd.DataFrame(flatten_stats(stats), columns=["statistic", "value"])
        body += [f"<h2>{html.escape(stage)}</h2>", html_table(frame)]
    write_text(path, html_page("Corpus and vocabulary statistics", "\n".join(body)))


# --- vanishing gradient ----------------------------------------------------------------------


def plot_gradient_norms(diagnostics: Mapping[str, Mapping], path: str | os.PathLike) -> None:
    """‖∂L_t/∂s_{t−k}‖ against k for every model, trained (solid) and at initialisation (dashed).

    `diagnostics` maps a model name to the JSON written by `rnnlm.diagnostics.run_diagnostics`.
    """
    fig = Figure(figsize=(10.0, 5.0), layout="constrained")
    ax = fig.add_subplot()
    colors = [f"C{i}" for i in range(10)]
    for index, (name, result) in enumerate(diagnostics.items()):
        color = colors[index % len(colors)]
        distance = np.asarray(result["distance"])
        for state, style in (("trained", "-"), ("initial", "--")):
            curve = result[state]
            norms = np.asarray(curve["mean_norm"], dtype=float)
            shown = norms > 0
            radius = curve.get("spectral_radius")
            radius_text = f", ρ(W)={radius:.2f}" if radius is not None else ""
            ax.semilogy(
                distance[shown], norms[shown], linestyle=style, color=color, linewidth=1.8,
                label=f"{name} ({state}{radius_text})",
            )
    ax.set_xlabel("distance k (time steps back from the predicted word)")
    ax.set_ylabel(r"mean $\Vert\partial L_t\,/\,\partial s_{t-k}\Vert$ (nats per unit of state)")
    ax.set_title("Vanishing gradient: how far back the loss reaches into the hidden state")
    ax.grid(True, which="both", alpha=0.3)
    # Outside the axes: with several models the curves fill the whole plot area.
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="solid: trained\ndashed: at initialisation",
              title_fontsize=8)
    save_figure(fig, path)


def gradient_summary(diagnostics: Mapping[str, Mapping]) -> pd.DataFrame:
    rows = []
    for name, result in diagnostics.items():
        cell = result.get("cell")
        truncate = result.get("bptt_truncate")
        row = {
            "model": name,
            "cell": cell,
            # Gated cells use fixed sigmoid/tanh gates: the activation setting does not apply to them.
            "activation": result.get("activation") if cell == "rnn" else None,
            "BPTT steps": "full" if not truncate else truncate,
        }
        for column, key in (("ρ(W)", "spectral_radius"), ("σ_max(W)", "spectral_norm"),
                            ("decay per step", "decay_per_step")):
            for state in ("initial", "trained"):
                row[f"{column} ({state})"] = result[state].get(key)
        rows.append(row)
    return pd.DataFrame(rows)


def spectral_radius_statements(diagnostics: Mapping[str, Mapping]) -> list[str]:
    """What this run's ρ(W) says, per model with a single W: below or above 1, before and after."""
    statements = []
    for name, result in diagnostics.items():
        initial, trained = result["initial"].get("spectral_radius"), result["trained"].get("spectral_radius")
        if initial is None or trained is None:
            continue
        side = lambda value: "below 1" if value < 1 else "at or above 1"  # noqa: E731
        verb = "grew" if trained > initial else "fell" if trained < initial else "stayed"
        consequence = ("so the powers of W shrink and the gradient must vanish over long distances"
                       if trained < 1 else "so W alone does not force the gradient to vanish: where it still "
                       "decays, saturated activations (derivative near 0) damp it")
        statements.append(f"{name}: ρ(W) {verb} from {initial:.2f} ({side(initial)}) at initialisation to "
                          f"{trained:.2f} ({side(trained)}) after training, {consequence}.")
    return statements


def write_gradient_page(diagnostics: Mapping[str, Mapping], path: str | os.PathLike) -> None:
    statements = "".join(f"<p class=\"note\">{html.escape(text)}</p>" for text in spectral_radius_statements(diagnostics))
    note = (
        "<p class=\"note\">ρ(W): spectral radius (largest absolute eigenvalue) of the recurrent matrix W; "
        "σ_max(W): its largest singular value. Decay per step is exp(slope) of a straight-line fit to log mean gradient norm "
        "against distance: 0.5 means the signal from a word halves with every step it lies further back. "
        "Each step multiplies the gradient by W transposed and by activation derivatives of at most 1 (tanh, "
        "relu), so a largest singular value of W below 1 forces the gradient to vanish geometrically; the "
        "spectral radius (largest absolute eigenvalue) sets the long-run growth of W's powers, the eigenvalue "
        "argument for why a vanilla RNN struggles to learn long dependencies.</p>"
    )
    write_text(path, html_page("Vanishing-gradient diagnostics",
                               html_table(gradient_summary(diagnostics)) + statements + note))


# --- entry points for the workflow scripts: paths in, artifacts out ---------------------------


def build_loss_figure(train_log_path, metrics_path, model_name: str, png_path) -> None:
    metrics = read_json(metrics_path)
    unigram = metrics.get("splits", {}).get("valid", {}).get("unigram_loss")
    plot_loss_curves(read_train_log(train_log_path), model_name, png_path, unigram_loss=unigram)


def metrics_rows(metrics_by_model: Mapping[str, Mapping]) -> list[dict]:
    """Perplexity rows of the RNN models plus one unigram row (it depends on the train split only)."""
    rows = []
    unigram = None
    for name, metrics in metrics_by_model.items():
        splits = metrics.get("splits")
        if not isinstance(splits, Mapping):
            raise RnnlmError(f"metrics of model '{name}' lack a 'splits' section; re-run its evaluation")
        rows.append({"model": name, "kind": "RNN", **{s: splits.get(s, {}).get("perplexity") for s in SPLIT_NAMES}})
        unigram = unigram or {s: splits.get(s, {}).get("unigram_perplexity") for s in SPLIT_NAMES}
    if unigram is not None:
        rows.append({"model": "unigram (add-one)", "kind": "baseline", **unigram})
    return rows


def ngram_rows(ngram_results: Iterable[Mapping]) -> list[dict]:
    """Rows of the n-gram baselines (`results/baseline/kn{order}.json`)."""
    rows = []
    for result in ngram_results:
        splits = result.get("splits", {})
        rows.append({"model": f"Kneser-Ney {result['order']}-gram", "kind": "baseline",
                     **{s: splits.get(s, {}).get("perplexity") for s in SPLIT_NAMES}})
    return rows


def interpolation_rows(interpolations: Mapping[str, Mapping]) -> list[dict]:
    """Rows of each model mixed with the n-gram (`models/{model}/interpolation.json`): valid and test only."""
    rows = []
    for name, result in interpolations.items():
        splits = result.get("splits", {})
        rows.append({
            "model": f"{name} + {result['ngram_order']}-gram (RNN weight {result['weight_rnn']:.2f})",
            "kind": "interpolated",
            **{s: splits.get(s, {}).get("interpolated_perplexity") for s in SCORED_SPLITS},
        })
    return rows


def build_perplexity_table(metrics_paths: Mapping[str, str], csv_path, html_path, ngram_paths: Iterable[str] = (),
                           interpolation_paths: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The perplexity table of the RNN models, the unigram and n-gram baselines and the interpolations."""
    rows = metrics_rows({name: read_json(path) for name, path in metrics_paths.items()})
    rows += ngram_rows(read_json(path) for path in ngram_paths)
    rows += interpolation_rows({name: read_json(path) for name, path in (interpolation_paths or {}).items()})
    frame = perplexity_table(rows)
    write_perplexity_table(frame, csv_path, html_path)
    return frame


def build_samples_page(samples_paths: Mapping[str, str], html_path) -> None:
    texts = {}
    for name, path in samples_paths.items():
        try:
            texts[name] = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise RnnlmError(f"{path}: samples of model '{name}' not found; run its generate stage") from None
    write_samples_page(texts, html_path)


def build_corpus_report(vocab_path, split_paths: Mapping[str, str], stats_paths: Mapping[str, str], zipf_path, html_path) -> None:
    plot_zipf(Vocabulary.load(vocab_path), zipf_path)
    splits = {name: Split.load(path) for name, path in split_paths.items()}
    write_corpus_page(split_statistics(splits), {stage: read_json(path) for stage, path in stats_paths.items()}, html_path)


def build_gradient_report(diagnostics_paths: Mapping[str, str], png_path, html_path) -> None:
    diagnostics = {name: read_json(path) for name, path in diagnostics_paths.items()}
    plot_gradient_norms(diagnostics, png_path)
    write_gradient_page(diagnostics, html_path)


# --- time to quality -------------------------------------------------------------------------


def plot_time_to_quality(logs: Mapping[str, pd.DataFrame], ngram: Mapping, path: str | os.PathLike) -> None:
    """Validation perplexity of every model against its training CPU-seconds (the `cpu_seconds`
    column of train_log.csv: epochs and validation passes), with the n-gram baseline's."""
    fig = Figure(figsize=(7.0, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for name, log in logs.items():
        if "cpu_seconds" not in log.columns:
            raise RnnlmError(f"the training log of model {name} has no cpu_seconds column; re-run its training")
        seconds = pd.to_numeric(log["cpu_seconds"], errors="coerce").to_numpy(dtype=float)
        perplexity = np.exp(pd.to_numeric(log["valid_loss"], errors="coerce").to_numpy(dtype=float))
        measured = np.isfinite(perplexity) & np.isfinite(seconds) & (seconds > 0)
        if not measured.any():
            continue
        best = int(np.nanargmin(np.where(measured, perplexity, np.inf)))
        ax.plot(seconds[measured], perplexity[measured], marker="o", markersize=3, linewidth=1.6,
                label=f"{name}: best {perplexity[best]:,.1f} after {seconds[best]:,.0f} CPU-s")
    valid = ngram.get("splits", {}).get("valid", {}).get("perplexity")
    if valid is not None and math.isfinite(valid):
        ax.axhline(valid, color="gray", linestyle="--", linewidth=1, label=f"KN{ngram.get('order', '')}: {valid:,.1f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain_log_ticks(ax.xaxis)
    plain_log_ticks(ax.yaxis)
    ax.set_xlabel("training CPU-seconds (epochs and validation passes)")
    ax.set_ylabel("validation perplexity")
    ax.set_title("Time to quality")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def build_time_to_quality_figure(train_log_paths: Mapping[str, str], ngram_path, png_path) -> None:
    plot_time_to_quality({name: read_train_log(path) for name, path in train_log_paths.items()},
                         read_json(ngram_path), png_path)
