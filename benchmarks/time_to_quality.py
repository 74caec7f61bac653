"""Time to a good model: perplexity against training CPU-seconds on a real corpus, next to KN3
and a PyTorch reference trained on exactly the same splits and predicted tokens.

What it does:
  1. builds the data with the pipeline itself (a copy of this workflow, `snakemake` on the
     corpus with the chosen config: tokenize, vocabulary, index, the KN baseline);
  2. trains every model of the config's `models:` with `rnnlm.train` (one process per model, one
     BLAS thread each, `--jobs` at a time), stopping each at `--budget` CPU-seconds of training
     (its own epochs and validation passes; scoring the test split for this benchmark is not
     counted). After each validation it records valid and test perplexity of the parameters a
     user would get when stopping there (the best so far on valid);
  3. trains two PyTorch references (the recipe of PyTorch's word_language_model example: 2-layer
     LSTM, 200 units, embedding 200, dropout 0.2, SGD lr 20 divided by 4 when valid stops improving,
     gradient norm clipped at 0.25, BPTT 35, batch 20, one thread; `pytorch` untied as the example's
     defaults, `pytorch-tied` with its --tied) on the same tokens: the train split's documents as one
     stream as that example reads a corpus, predicting exactly the tokens the RNN predicts (each
     sentence's words and SENTENCE_END); scored in context (each document from a fresh state) and
     per sentence, after every epoch and once more when the budget runs out;
  4. interpolates each model's final parameters with KN3 (weight tuned on valid);
  5. writes `time_to_quality.json` and `time_to_quality.png` (test perplexity against CPU-seconds).

Usage (the figures in README.md and docs/training.md; at budget 1200 a corpus takes up to 80
CPU-minutes, four trainings two at a time; early stopping ends ours sooner):
  pip install -e '.[bench]'
  python benchmarks/time_to_quality.py --corpus ../shared/corpora/tinyshakespeare/input.txt \\
      --configfile config/tinyshakespeare.yaml --budget 1200
  (and --corpus ../shared/corpora/sherlock/input.txt --configfile config/sherlock.yaml)
It writes results/time_to_quality/ (time_to_quality.json, time_to_quality.png, one run-NAME.json per
training); benchmarks/results/time_to_quality_{tinyshakespeare,sherlock}.json are the runs behind
the README.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# One BLAS / OpenMP thread in every process this script starts (set before NumPy is imported).
THREAD_ENV = {name: "1" for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
os.environ.update(THREAD_ENV)
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from rnnlm.backend import get_backend  # noqa: E402
from rnnlm.data import Split  # noqa: E402
from rnnlm.evaluate import mean_loss  # noqa: E402
from rnnlm.interpolate import mixture_log_probs, rnn_token_log_probs, tune_weight  # noqa: E402
from rnnlm.io import load_npz  # noqa: E402
from rnnlm.model import RNNLM  # noqa: E402
from rnnlm.ngram import perplexity  # noqa: E402
from rnnlm.train import run_training  # noqa: E402
from rnnlm.vocab import SENTENCE_END_ID, Vocabulary  # noqa: E402

WORKFLOW_FILES = ("Snakefile", "config.yaml", "workflow", "rnnlm", "config")
SPLITS = ("train", "valid", "test")
# The PyTorch example's recipe.
TORCH_VARIANTS = ("pytorch", "pytorch-tied")  # the example's defaults, and the same with --tied
TORCH_RECIPE = {"layers": 2, "hidden_size": 200, "embedding_size": 200, "dropout": 0.2, "learning_rate": 20.0,
                "anneal": 4.0, "clip_norm": 0.25, "bptt": 35, "batch_size": 20, "init_range": 0.1}


# ---------------------------------------------------------------------------------------- data
def build_data(corpus: Path, configfile: Path | None, workdir: Path, overrides: list[str], cores: int) -> Path:
    """Run the pipeline's data stages and the KN3 baseline on a copy of this workflow; its results/."""
    workdir.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        source, target = REPO_ROOT / name, workdir / name
        if not source.exists():
            continue
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    order = load_config(workdir / "config.yaml", configfile)["baseline"]["order"]
    targets = [f"results/data/{split}.npz" for split in SPLITS] + [f"results/baseline/kn{order}.json"]
    command = [sys.executable, "-m", "snakemake", "--cores", str(cores)]
    if configfile is not None:
        command += ["--configfile", str(configfile.resolve())]
    command += ["--config", f"corpus={corpus.resolve()}", *overrides, "--", *targets]
    subprocess.run(command, cwd=workdir, check=True)
    return workdir / "results"


def load_config(default: Path, configfile: Path | None) -> dict:
    """config.yaml with a --configfile merged over it key by key (Snakemake's rule for top-level keys)."""
    config = yaml.safe_load(default.read_text(encoding="utf-8"))
    if configfile is not None:
        config.update(yaml.safe_load(configfile.read_text(encoding="utf-8")))
    return config


# ------------------------------------------------------------------------------- our models
def train_ours(results: Path, name: str, hyper: dict, budget: float, dtype: str, out: Path) -> None:
    """Train one model to the budget, recording perplexities after each validation (a subprocess)."""
    data = results / "data"
    test = Split.load(data / "test.npz")
    curve = []

    def observe(state, model) -> bool:
        row = state.rows[-1]
        if state.best_epoch == state.epoch:  # the parameters a user would keep if it stopped now
            curve.append({"cpu_seconds": row["cpu_seconds"], "epoch": state.epoch,
                          "valid_perplexity": math.exp(row["valid_loss"]),
                          "test_perplexity": math.exp(mean_loss(model, test))})
        elif curve:
            curve.append({**curve[-1], "cpu_seconds": row["cpu_seconds"], "epoch": state.epoch})
        return state.cpu_seconds >= budget

    model_dir = out.parent / f"model-{name}"
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "checkpoint.npz").unlink(missing_ok=True)  # always from scratch: CPU time is the point
    started = time.perf_counter()
    state = run_training(data / "train.npz", data / "valid.npz", results / "vocab" / "vocab.tsv",
                         model_dir / "params.npz", model_dir / "checkpoint.npz", model_dir / "train_log.csv",
                         hyper, device="cpu", dtype=dtype, name=name, observer=observe)
    result = {"hyperparameters": hyper, "curve": curve, "epochs": state.epoch, "stopped_early": state.stopped_early,
              "cpu_seconds": state.cpu_seconds, "wall_seconds": time.perf_counter() - started,
              "tokens_per_s": [row["tokens_per_s"] for row in state.rows if row["tokens_per_s"]]}
    result["final"] = {"valid_perplexity": curve[-1]["valid_perplexity"], "test_perplexity": curve[-1]["test_perplexity"]}
    trained = RNNLM.load(model_dir / "params.npz", get_backend("cpu"))[0]
    # The same test tokens read one sentence at a time from a fresh state (a subset of sentences is
    # one sentence a document), beside the model's own reading, as the references are scored.
    result["final"]["test_perplexity_per_sentence"] = math.exp(mean_loss(trained, test.subset(np.arange(len(test)))))
    result["final"].update(interpolate_with_ngram(results, lambda split: rnn_token_log_probs(trained, split)))
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")


def interpolate_with_ngram(results: Path, token_log_probs) -> dict:
    """Interpolated valid/test perplexity with the baseline (weight tuned on valid, as the pipeline)."""
    ngram_path = next((results / "baseline").glob("kn*_log_probs.npz"))
    ngram = load_npz(ngram_path)
    scores = {split: (token_log_probs(Split.load(results / "data" / f"{split}.npz")), ngram[split])
              for split in ("valid", "test")}
    weight = tune_weight(*scores["valid"])
    return {"interpolation_weight": weight,
            **{f"{split}_interpolated_perplexity": perplexity(mixture_log_probs(rnn, kn, weight))
               for split, (rnn, kn) in scores.items()}}


# -------------------------------------------------------------------------- PyTorch reference
def document_streams(split: Split) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The split read as documents: the input stream (the index file's x, with SENTENCE_END instead
    of SENTENCE_START at every sentence start but a document's first, as PTB's <eos>) and each
    document's [start, stop) token range. The targets are the split's own y, so every reading
    predicts the same tokens. A split without document offsets is one document."""
    doc_offsets = getattr(split, "doc_offsets", None)
    if doc_offsets is None:
        doc_offsets = np.array([0, len(split)], dtype=np.int64)
    inputs = split.x.astype(np.int64)
    first_sentences = np.zeros(len(split), dtype=bool)
    first_sentences[doc_offsets[:-1][doc_offsets[:-1] < len(split)]] = True
    inputs[split.offsets[:-1][~first_sentences]] = SENTENCE_END_ID
    bounds = split.offsets[doc_offsets]
    return inputs, [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def train_torch(results: Path, budget: float, seed: int, out: Path, tied: bool) -> None:
    """The PyTorch word_language_model recipe on the same token streams, to the budget (a subprocess).

    Training reads the train split as that example reads a corpus: its documents in file order as
    one stream cut into `batch_size` rows, the state carried throughout. It is scored in context
    (each document from a fresh state, as this pipeline's `context: document` models) and per
    sentence (each sentence from a fresh state, as `context: sentence` models)."""
    import torch
    from torch import nn

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    recipe = {**TORCH_RECIPE, "tied": tied}
    vocab_size = len(Vocabulary.load(results / "vocab" / "vocab.tsv"))
    splits = {name: Split.load(results / "data" / f"{name}.npz") for name in SPLITS}

    class LSTMLanguageModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.drop = nn.Dropout(recipe["dropout"])
            self.embedding = nn.Embedding(vocab_size, recipe["embedding_size"])
            self.lstm = nn.LSTM(recipe["embedding_size"], recipe["hidden_size"], recipe["layers"],
                                dropout=recipe["dropout"])
            self.decoder = nn.Linear(recipe["hidden_size"], vocab_size)
            for weight in (self.embedding.weight, self.decoder.weight):
                nn.init.uniform_(weight, -recipe["init_range"], recipe["init_range"])
            nn.init.zeros_(self.decoder.bias)
            if recipe["tied"]:  # the example's --tied: one matrix is the embedding and the decoder
                self.decoder.weight = self.embedding.weight

        def forward(self, inputs, state):
            output, state = self.lstm(self.drop(self.embedding(inputs)), state)
            return self.decoder(self.drop(output)), state

    def scores_of(model, inputs: np.ndarray, targets: np.ndarray) -> torch.Tensor:
        """log p of each target, reading `inputs` as one sequence from a fresh state in bptt windows."""
        state, scores = None, []
        inputs = torch.from_numpy(inputs.astype(np.int64)).unsqueeze(1)
        targets = torch.from_numpy(targets.astype(np.int64)).unsqueeze(1)
        for start in range(0, inputs.shape[0], recipe["bptt"]):
            logits, state = model(inputs[start : start + recipe["bptt"]], state)
            log_probs = torch.log_softmax(logits, dim=-1)
            scores.append(log_probs.gather(-1, targets[start : start + recipe["bptt"]].unsqueeze(-1)).reshape(-1))
        return torch.cat(scores)

    def token_log_probs(model, split, context: str = "document") -> np.ndarray:
        """log p of every target of the split in order, read in context or per sentence."""
        model.eval()
        if context == "document":
            inputs, ranges = document_streams(split)
        else:
            inputs, ranges = split.x, list(zip(split.offsets[:-1].tolist(), split.offsets[1:].tolist()))
        with torch.no_grad():
            scores = [scores_of(model, inputs[a:b], split.y[a:b]) for a, b in ranges]
        return torch.cat(scores).double().numpy()

    def mean_loss(model, split) -> float:
        return float(-token_log_probs(model, split).mean())

    model = LSTMLanguageModel()
    stream, _ = document_streams(splits["train"])
    columns = len(stream) // recipe["batch_size"]
    as_rows = lambda ids: torch.from_numpy(  # noqa: E731 - the example's batchify: (T, batch) streams
        ids[: recipe["batch_size"] * columns].astype(np.int64).reshape(recipe["batch_size"], columns).T.copy())
    inputs, targets = as_rows(stream), as_rows(splits["train"].y)
    learning_rate, best_valid, best_state = recipe["learning_rate"], math.inf, None
    curve, epoch, spent = [], 0, 0.0
    clock = time.process_time()
    done = False

    def measure() -> None:
        nonlocal best_valid, best_state, learning_rate, clock, spent
        valid = mean_loss(model, splits["valid"])
        spent += time.process_time() - clock
        if valid < best_valid:
            best_valid, best_state = valid, {k: v.clone() for k, v in model.state_dict().items()}
            curve.append({"cpu_seconds": spent, "epoch": epoch, "valid_perplexity": math.exp(valid),
                          "test_perplexity": math.exp(mean_loss(model, splits["test"]))})
        else:
            learning_rate /= recipe["anneal"]
            curve.append({**curve[-1], "cpu_seconds": spent, "epoch": epoch})
        print(f"torch{'-tied' if tied else ''}: epoch {epoch}, valid perplexity {math.exp(valid):.1f}, "
              f"lr {learning_rate:g}, {spent:,.0f} CPU-s", file=sys.stderr, flush=True)
        # The curve so far, so that a run stopped from outside still leaves its measurements.
        out.with_suffix(".partial.json").write_text(json.dumps({"recipe": recipe, "curve": curve}), encoding="utf-8")
        clock = time.process_time()

    started = time.perf_counter()
    while not done:
        epoch += 1
        model.train()
        state = None
        for start in range(0, inputs.shape[0] - 1, recipe["bptt"]):
            if state is not None:
                state = tuple(part.detach() for part in state)
            logits, state = model(inputs[start : start + recipe["bptt"]], state)
            loss = nn.functional.cross_entropy(logits.reshape(-1, vocab_size),
                                               targets[start : start + recipe["bptt"]].reshape(-1))
            model.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), recipe["clip_norm"])
            with torch.no_grad():
                for parameter in model.parameters():
                    parameter.add_(parameter.grad, alpha=-learning_rate)
            if spent + time.process_time() - clock >= budget:
                done = True
                break
        measure()
    model.load_state_dict(best_state)
    result = {"recipe": recipe, "context": "document", "curve": curve, "epochs": epoch, "cpu_seconds": spent,
              "wall_seconds": time.perf_counter() - started, "torch_version": torch.__version__,
              "final": {"valid_perplexity": curve[-1]["valid_perplexity"],
                        "test_perplexity": curve[-1]["test_perplexity"],
                        "test_perplexity_in_context": curve[-1]["test_perplexity"],
                        "test_perplexity_per_sentence": perplexity(
                            token_log_probs(model, splits["test"], context="sentence"))}}
    result["final"].update(interpolate_with_ngram(results, lambda split: token_log_probs(model, split)))
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")


# ---------------------------------------------------------------------------------- summary
def at_budget(curve: list[dict], seconds: float) -> float | None:
    """Test perplexity of the parameters kept at `seconds` CPU-seconds (None before the first point)."""
    reached = [point for point in curve if point["cpu_seconds"] <= seconds]
    return reached[-1]["test_perplexity"] if reached else None


def first_below(curve: list[dict], perplexity: float) -> float | None:
    """CPU-seconds at which the kept parameters' test perplexity first reaches `perplexity`."""
    return next((point["cpu_seconds"] for point in curve if point["test_perplexity"] <= perplexity), None)


def read_run(path: Path) -> dict:
    """A run-NAME.json, or the .partial.json of a reference stopped before its budget: then its last
    measurement stands as its result (no KN mixture, no per-sentence score: `partial` says so)."""
    run = json.loads(path.read_text(encoding="utf-8"))
    if "final" not in run:
        last = run["curve"][-1]
        run.update(partial=True, cpu_seconds=last["cpu_seconds"], epochs=last["epoch"],
                   final={"valid_perplexity": last["valid_perplexity"], "test_perplexity": last["test_perplexity"]})
    return run


def worst_ratio(run: dict, reference: dict, start: float) -> float | None:
    """The largest test-perplexity ratio of `run` to `reference` at any CPU-second from `start` on
    where either was measured (<= 1: at or below it throughout), up to the shorter run's end; a run
    that stopped early keeps its parameters, so it is compared up to the reference's end."""
    curve, theirs_curve = run["curve"], reference["curve"]
    if not curve or not theirs_curve:
        return None
    end = theirs_curve[-1]["cpu_seconds"]
    if not run.get("stopped_early"):
        end = min(end, curve[-1]["cpu_seconds"])
    moments = sorted({p["cpu_seconds"] for p in curve + theirs_curve if start <= p["cpu_seconds"] <= end} | {start})
    ratios = [ours / theirs for seconds in moments
              if (ours := at_budget(curve, seconds)) is not None and (theirs := at_budget(theirs_curve, seconds))]
    return max(ratios) if ratios else None


def plot(runs: dict, ngram: dict, path: Path, checkpoints: list[float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rnnlm.report import plain_log_ticks

    fig, ax = plt.subplots(figsize=(8, 5))
    budget = max(checkpoints + [run["cpu_seconds"] for run in runs.values()])
    for name, run in runs.items():
        points = [p for p in run["curve"] if p["cpu_seconds"] >= 1]  # the untrained model is off the chart
        seconds, perplexity = [p["cpu_seconds"] for p in points], [p["test_perplexity"] for p in points]
        mixture = run["final"].get("test_interpolated_perplexity")
        line, = ax.step(seconds, perplexity, where="post",
                        label=f"{name}: {run['final']['test_perplexity']:.1f} at {run['cpu_seconds']:,.0f} CPU-s"
                        + (f" (+ KN{ngram['order']}: {mixture:.1f})" if mixture
                           else " (stopped before its budget)" if run.get("partial") else ""))
        if seconds and seconds[-1] < budget:  # stopped early: what it kept stays what a user has
            ax.plot([seconds[-1], budget], [perplexity[-1]] * 2, linestyle=":", color=line.get_color())
    ax.axhline(ngram["test"], color="gray", linestyle="--", label=f"KN{ngram['order']}: {ngram['test']:.1f}")
    ax.set_ylim(0.8 * min(run["final"]["test_perplexity"] for run in runs.values()), 2 * ngram["test"])
    for seconds in checkpoints:
        ax.axvline(seconds, color="lightgray", linestyle=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain_log_ticks(ax.xaxis)
    plain_log_ticks(ax.yaxis)
    ax.set_xlabel("training CPU-seconds (one thread; validation included)")
    ax.set_ylabel("test perplexity of the parameters kept so far")
    ax.set_title("Time to quality")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, help="a real text corpus (any format the pipeline reads)")
    parser.add_argument("--configfile", type=Path, help="merged over config.yaml (data settings and models:)")
    parser.add_argument("--models", nargs="*", help="names under models: (default: all of them)")
    parser.add_argument("--budget", type=float, default=1200.0, help="training CPU-seconds per model")
    parser.add_argument("--checkpoints", type=float, nargs="*", default=[300.0, 1200.0],
                        help="CPU-second budgets to report (test perplexity of the parameters kept then)")
    parser.add_argument("--torch", nargs="*", choices=TORCH_VARIANTS, default=list(TORCH_VARIANTS),
                        help="PyTorch references to train (default: both; none: --torch with no value)")
    parser.add_argument("--jobs", type=int, default=2, help="trainings at a time (one thread each)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "results" / "time_to_quality")
    parser.add_argument("--config", nargs="*", default=[], metavar="KEY=VALUE",
                        help="further --config overrides for the data stages")
    parser.add_argument("--data", type=Path, help="the results/ folder of an earlier run of this benchmark "
                        "(data and baseline): reuse it instead of building the data again")
    parser.add_argument("--reference-only", action="store_true", help="train only the PyTorch reference")
    parser.add_argument("--include", type=Path, nargs="*", default=[],
                        help="run-NAME.json files of earlier runs (same --data) to show beside this run's")
    # internal: one training in its own process
    parser.add_argument("--worker", choices=("ours", *TORCH_VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--results", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--hyper", help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the trainers' epoch lines
    if args.worker == "ours":
        return train_ours(args.results, args.model, json.loads(args.hyper), args.budget, args.dtype, args.result_file)
    if args.worker in TORCH_VARIANTS:
        return train_torch(args.results, args.budget, 0, args.result_file, tied=args.worker == "pytorch-tied")
    if args.corpus is None:
        parser.error("--corpus is required")

    args.out.mkdir(parents=True, exist_ok=True)
    if args.data is not None:
        results = args.data.resolve()
    else:
        results = build_data(args.corpus, args.configfile, args.out / "workflow", args.config, cores=args.jobs)
    config = load_config(REPO_ROOT / "config.yaml", args.configfile)
    models = {name: hyper for name, hyper in config["models"].items()
              if (not args.models or name in args.models) and not args.reference_only}
    jobs = {name: [sys.executable, __file__, "--worker", "ours", "--results", str(results), "--model", name,
                   "--hyper", json.dumps(hyper), "--dtype", config.get("dtype", "float32"),
                   "--budget", str(args.budget), "--result-file", str(args.out / f"run-{name}.json")]
            for name, hyper in models.items()}
    for variant in args.torch:
        jobs[variant] = [sys.executable, __file__, "--worker", variant, "--results", str(results),
                         "--budget", str(args.budget), "--result-file", str(args.out / f"run-{variant}.json")]
    env = {**os.environ, **THREAD_ENV}
    with ThreadPoolExecutor(args.jobs) as pool:
        for name, done in zip(jobs, pool.map(lambda command: subprocess.run(command, env=env), jobs.values())):
            if done.returncode:
                raise SystemExit(f"training {name} failed (exit {done.returncode})")

    baseline = json.loads(next((results / "baseline").glob("kn*.json")).read_text(encoding="utf-8"))
    ngram = {"order": baseline["order"], "valid": baseline["splits"]["valid"]["perplexity"],
             "test": baseline["splits"]["test"]["perplexity"]}
    runs = {name: json.loads((args.out / f"run-{name}.json").read_text(encoding="utf-8")) for name in jobs}
    for path in args.include:
        runs.setdefault(path.name.split(".")[0].removeprefix("run-"), read_run(path))
    data_stats = json.loads((results / "data" / "stats.json").read_text(encoding="utf-8"))
    summary = {}
    for name, run in runs.items():
        summary[name] = {"cpu_seconds_to_ngram_test": first_below(run["curve"], ngram["test"]),
                         **{f"test_at_{seconds:g}": at_budget(run["curve"], seconds) for seconds in args.checkpoints},
                         **run["final"]}
    references = {name: runs[name] for name in TORCH_VARIANTS if name in runs}
    if references:
        # The better reference at the end is the one to beat; the curve test uses the same one.
        best = min(references, key=lambda name: references[name]["final"]["test_perplexity"])
        reference = references[best]
        for name, row in summary.items():
            row["reference"] = best
            row["final_vs_reference"] = row["test_perplexity"] / reference["final"]["test_perplexity"]
            row["worst_ratio_to_reference_from_120"] = worst_ratio(runs[name], reference, 120.0)
            if "test_interpolated_perplexity" in row:
                row["final_interpolated_vs_reference"] = (row["test_interpolated_perplexity"]
                                                          / reference["final"]["test_perplexity"])
                row["interpolated_vs_ngram"] = row["test_interpolated_perplexity"] / ngram["test"]
    report = {"corpus": str(args.corpus), "configfile": str(args.configfile) if args.configfile else None,
              "budget": args.budget, "tokens": {split: data_stats[split]["tokens"] for split in SPLITS},
              "vocabulary_size": data_stats.get("vocabulary_size"), "ngram": ngram, "summary": summary, "runs": runs,
              "load_average": os.getloadavg()}
    (args.out / "time_to_quality.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    plot(runs, ngram, args.out / "time_to_quality.png", args.checkpoints)
    print(f"KN{ngram['order']} test perplexity {ngram['test']:.1f}")
    header = ["model", "CPU-s to KN test", *[f"test @{s:g} s" for s in args.checkpoints], "final test",
              "final + KN", "CPU-s", "final / PyTorch", "final + KN / PyTorch", "worst / PyTorch from 120 s",
              "+ KN / KN"]
    print(" | ".join(header))
    for name, row in summary.items():
        cells = [name, row["cpu_seconds_to_ngram_test"], *[row[f"test_at_{s:g}"] for s in args.checkpoints],
                 row["test_perplexity"], row.get("test_interpolated_perplexity"), runs[name]["cpu_seconds"],
                 row.get("final_vs_reference"), row.get("final_interpolated_vs_reference"),
                 row.get("worst_ratio_to_reference_from_120"), row.get("interpolated_vs_ngram")]
        print(" | ".join(f"{c:,.3g}" if isinstance(c, float) and c < 10 else f"{c:,.1f}" if isinstance(c, float)
                         else str(c) for c in cells))
    print(f"wrote {args.out / 'time_to_quality.json'} and {args.out / 'time_to_quality.png'}")


if __name__ == "__main__":
    main()
