"""Training throughput of document mode (`context: document`) against sentence mode, same model.

It reads a pretokenized corpus (one sentence a line, e.g. ../shared/corpora/ptb/ptb.valid.txt), keeps
its most frequent words, and runs the trainer's own inner loop (`rnnlm.update` steps on the batches
of `rnnlm.train._BatchStream`, or on the windows of `rnnlm.streams.TrainingWindows` with the carried
state) for one model entry of config.yaml in both modes, alternating rounds of `--seconds`
CPU-seconds each, so both see the same machine load. Reported: training tokens per CPU-second of
this process (`time.process_time`) per mode and their ratio. Run it on one BLAS thread:

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_context.py --corpus ../shared/corpora/ptb/ptb.valid.txt \
        --model rnn --out benchmarks/results/context_rnn.json

The file is read as one document (the standard-split convention), or cut into documents of
`--sentences-per-document` consecutive sentences.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import yaml

from rnnlm.backend import get_backend
from rnnlm.checkpoint import TrainState
from rnnlm.data import Split
from rnnlm.model import RNNLM
from rnnlm.optim import Adam
from rnnlm.streams import TrainingWindows
from rnnlm.train import _BatchStream
from rnnlm.train_config import split_hyperparameters
from rnnlm.update import adam_step, sgd_step
from rnnlm.vocab import SPECIAL_TOKENS, UNKNOWN_ID

REPO = Path(__file__).resolve().parents[1]


def corpus_split(path: Path, vocab_size: int, sentences_per_document: int) -> tuple[Split, np.ndarray]:
    sentences = [line.split() for line in path.read_text(encoding="utf-8").splitlines() if line.split()]
    counts = collections.Counter(word for sentence in sentences for word in sentence)
    kept = [word for word, _ in counts.most_common(vocab_size - len(SPECIAL_TOKENS))]
    ids = {word: i + len(SPECIAL_TOKENS) for i, word in enumerate(kept)}
    flat = np.array([ids.get(word, UNKNOWN_ID) for sentence in sentences for word in sentence], dtype=np.int32)
    step = sentences_per_document or len(sentences)
    split = Split.from_ids(flat, [len(sentence) for sentence in sentences],
                           doc_offsets=np.unique(np.append(np.arange(0, len(sentences), step), len(sentences))))
    word_counts = np.ones(vocab_size, dtype=np.int64)
    word_counts[len(SPECIAL_TOKENS):len(SPECIAL_TOKENS) + len(kept)] = [counts[word] for word in kept]
    return split, word_counts


class Trainer:
    """One mode's model and batches; `run(seconds)` trains for that many CPU-seconds of this process."""

    def __init__(self, hyper: dict, context: str, split: Split, word_counts, seed: int):
        model_config, self.cfg = split_hyperparameters({**hyper, "context": context}, len(word_counts), "float32")
        self.backend = get_backend("cpu")
        self.model = RNNLM(model_config, self.backend, seed=seed, word_counts=word_counts)
        self.optimizer = Adam(self.model.params, self.backend.xp) if self.cfg.optimizer == "adam" else None
        self.split, self.context = split, context
        self.windows = TrainingWindows(split, self.cfg.batch_size, self.cfg.bptt, seed) if context == "document" else None
        self.stream = self.windows or _BatchStream(split, self.cfg)
        self.state = TrainState(learning_rate=self.cfg.learning_rate)
        self.dropout_rng = self.backend.rng(seed)
        self.batches = iter(())
        self.tokens, self.cpu_seconds = 0, 0.0

    def _next(self):
        for _ in range(2):
            try:
                return next(self.batches)
            except StopIteration:
                self.batches = iter(self.stream.epoch(self.state))
        raise RuntimeError("no batches")

    def run(self, seconds: float) -> None:
        started = time.process_time()
        while time.process_time() - started < seconds:
            group = self._next()
            carry = {}
            if self.windows is None:
                x, y, mask = self.split.batch(group)
            else:
                x, y, mask = group.x, group.y, group.mask
                carry = dict(state=self.windows.carried, resets=self.backend.asarray(group.resets), return_state=True)
            batch = (self.backend.asarray(x), self.backend.asarray(y), self.backend.asarray(mask))
            if self.optimizer is None:
                result = sgd_step(self.model, *batch, self.state.learning_rate, self.cfg.clip_norm, None,
                                  self.dropout_rng, **carry)
            else:
                result = adam_step(self.model, self.optimizer, *batch, self.state.learning_rate, self.cfg.clip_norm,
                                   None, self.dropout_rng, **carry)
            if self.windows is not None:
                self.windows.carried = result[3]
            self.tokens += int(result[1])
        self.cpu_seconds += time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True, help="pretokenized text, one sentence a line")
    parser.add_argument("--model", default="rnn", help="an entry of config.yaml's models:")
    parser.add_argument("--bptt", type=int, default=None, help="document mode's window (default: the entry's or 35)")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--sentences-per-document", type=int, default=0, help="0 = the whole file one document")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=15.0, help="CPU-seconds per mode per round")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    hyper = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))["models"][args.model]
    if args.bptt is not None:
        hyper = {**hyper, "bptt": args.bptt}
    split, word_counts = corpus_split(args.corpus, args.vocab_size, args.sentences_per_document)
    trainers = {mode: Trainer(hyper, mode, split, word_counts, args.seed) for mode in ("sentence", "document")}
    for trainer in trainers.values():
        trainer.run(1.0)  # warm-up: allocations and BLAS buffers
        trainer.tokens, trainer.cpu_seconds = 0, 0.0
    for _ in range(args.rounds):
        for trainer in trainers.values():
            trainer.run(args.seconds)
    rates = {mode: trainer.tokens / trainer.cpu_seconds for mode, trainer in trainers.items()}
    report = {
        "model": args.model, "settings": hyper, "bptt": trainers["document"].cfg.bptt,
        "corpus": str(args.corpus), "tokens": split.num_tokens, "sentences": len(split),
        "documents": split.num_documents, "vocab_size": args.vocab_size,
        "rounds": args.rounds, "seconds_per_round": args.seconds,
        "tokens_per_cpu_second": {mode: round(rate, 1) for mode, rate in rates.items()},
        "document_over_sentence": round(rates["document"] / rates["sentence"], 3),
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"), "machine": platform.processor() or platform.machine(),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
