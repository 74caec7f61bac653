"""Kneser-Ney training and scoring speed on ~1.5M tokens, and NLTK's nltk.lm for comparison.

The corpus is a plain-text file (default: Tiny Shakespeare) read line by line as sentences, lowercased,
split into words and punctuation, and repeated until it holds --tokens predicted tokens. Repetition
multiplies every count, so the timing is realistic but the discounts fall back to their defaults.

    PYTHONPATH=. python benchmarks/bench_ngram.py [--corpus PATH] [--tokens 1500000] [--order 3]
                                     [--nltk-train-tokens 300000 --nltk-score-tokens 500]

NLTK is timed on a prefix (its scoring runs a Python loop per token and is far too slow for the
full corpus); its tokens/s are printed so the full-size cost can be extrapolated.
"""

from __future__ import annotations

import argparse
import collections
import re
import time

import numpy as np

from rnnlm.data import Split
from rnnlm.ngram import KneserNey, perplexity
from rnnlm.vocab import Vocabulary

WORD = re.compile(r"\w+|[^\w\s]")


def read_sentences(path: str) -> list[list[str]]:
    with open(path, encoding="utf-8") as handle:
        return [WORD.findall(line.lower()) for line in handle if line.strip()]


def repeated_split(sentences: list[list[str]], vocabulary: Vocabulary, tokens: int) -> Split:
    ids = [vocabulary.encode(s) for s in sentences]
    per_copy = sum(len(s) + 1 for s in sentences)
    copies = max(1, round(tokens / per_copy))
    lengths = np.tile([len(s) for s in sentences], copies)
    return Split.from_ids(np.concatenate(ids * copies), lengths)


def bench_ours(split: Split, vocab_size: int, order: int) -> None:
    start = time.perf_counter()
    model = KneserNey.fit(split, vocab_size, order)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    log_probs = model.token_log_probs(split)
    score_seconds = time.perf_counter() - start
    print(f"rnnlm.ngram order {order}: {split.num_tokens} tokens, fit {fit_seconds:.2f} s "
          f"({split.num_tokens / fit_seconds:,.0f} tokens/s), score {score_seconds:.2f} s "
          f"({split.num_tokens / score_seconds:,.0f} tokens/s), train perplexity {perplexity(log_probs):.2f}")


def bench_nltk(sentences: list[list[str]], order: int, train_tokens: int, score_tokens: int) -> None:
    from nltk.lm import KneserNeyInterpolated
    from nltk.lm.preprocessing import padded_everygram_pipeline, pad_both_ends
    from nltk.util import ngrams

    prefix, seen = [], 0
    for sentence in sentences:
        if seen >= train_tokens:
            break
        prefix.append(sentence)
        seen += len(sentence) + 1
    start = time.perf_counter()
    grams, vocab = padded_everygram_pipeline(order, prefix)
    model = KneserNeyInterpolated(order)
    model.fit(grams, vocab)
    fit_seconds = time.perf_counter() - start
    events = [g for s in prefix for g in ngrams(list(pad_both_ends(s, order)), order)][:score_tokens]
    start = time.perf_counter()
    for gram in events:
        model.logscore(gram[-1], gram[:-1])
    score_seconds = time.perf_counter() - start
    print(f"nltk.lm KneserNeyInterpolated order {order}: fit {seen} tokens in {fit_seconds:.2f} s "
          f"({seen / fit_seconds:,.0f} tokens/s), scored {len(events)} tokens in {score_seconds:.2f} s "
          f"({len(events) / score_seconds:,.1f} tokens/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="/work/shared/corpora/tinyshakespeare/input.txt")
    parser.add_argument("--tokens", type=int, default=1_500_000)
    parser.add_argument("--order", type=int, default=3)
    parser.add_argument("--vocabulary-size", type=int, default=8000)
    parser.add_argument("--nltk-train-tokens", type=int, default=0, help="0 skips NLTK")
    parser.add_argument("--nltk-score-tokens", type=int, default=500)
    args = parser.parse_args()
    sentences = read_sentences(args.corpus)
    counts = collections.Counter(word for s in sentences for word in s)
    vocabulary = Vocabulary.build(counts, len(sentences), args.vocabulary_size)
    bench_ours(repeated_split(sentences, vocabulary, args.tokens), len(vocabulary), args.order)
    if args.nltk_train_tokens:
        bench_nltk(sentences, args.order, args.nltk_train_tokens, args.nltk_score_tokens)


if __name__ == "__main__":
    main()
