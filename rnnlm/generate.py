"""Text from a trained model: random sampling, beam search, and scoring of given sentences.

Sentence length counts words only (prime words included, SENTENCE_START/END excluded).
Sampling never emits UNKNOWN_TOKEN or SENTENCE_START: they get probability zero and the rest is
renormalised. A sampled sentence that ends before `min_length` words, or has not ended after
`max_length`, is rejected and drawn again (the tutorial keeps only sentences of at least 7 words).
Log-probabilities are natural logarithms of the model's own probabilities, SENTENCE_END included,
so a beam-search sentence and the same sentence passed to `score_sentences` get the same figure.

Scoring a word outside the vocabulary: the model gives UNKNOWN_TOKEN's probability, which belongs
to all the words outside the vocabulary together, so a sentence of unknown words would look likely
(and rank high). `score_sentences` therefore spreads it evenly over the distinct words it stood for
in training (`unknown_word_types`, recorded in the params file from vocab/stats.json): each unknown
word costs ln(unknown_word_types) more than UNKNOWN_TOKEN. A params file without the record (made
before it) spreads it over as many words as the vocabulary holds.

These functions work on word tokens. `TrainedModel` wraps a params file for text in, text out: it
tokenizes primes and sentences to score as the training text was and detokenizes what it generates.

A `context: document` model reads text as a stream (`rnnlm.streams`): a prime paragraph's
sentences before its last are `context`, read first (SENTENCE_END between sentences, as in
training), and sampling and beam search continue from the state they leave; sentences to score
are read as one document each block (`doc_offsets`), each scored given the ones before it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

from nltk.tokenize.punkt import PunktSentenceTokenizer

from rnnlm import streams
from rnnlm.data import Split
from rnnlm.evaluate import load_trained
from rnnlm.io import RnnlmError, printable, write_text
from rnnlm.model import RNNLM
from rnnlm.tokenize import DocumentTokenizer, WordTokenizer, detokenize, installed_sentence_splitter
from rnnlm.vocab import SENTENCE_END_ID, SENTENCE_START_ID, UNKNOWN_ID, Vocabulary

# Sentences drawn per wanted sentence before giving up on the length limits.
MAX_ATTEMPTS_PER_SENTENCE = 100
# Bounds of the generate settings (the schema's maxima): what one process holds stays small.
MAX_NUM_SENTENCES = 100_000
MAX_SENTENCE_WORDS = 1_000
MAX_BEAM_WIDTH = 1_000
# Sampling draws at most this many sentences (and vocabulary x sentences logits) at a time.
SAMPLE_BATCH_ROWS = 1024
SAMPLE_BATCH_ELEMENTS = 1 << 24
SCORE_BATCH_SIZE = 256


@dataclass(frozen=True)
class ScoredSentence:
    words: list[str]
    log_prob: float          # ln p(words + SENTENCE_END | SENTENCE_START), unknown words spread (module doc)
    tokens: int              # predicted tokens: words + SENTENCE_END
    unknown: int             # words outside the vocabulary, scored through UNKNOWN_TOKEN

    @property
    def perplexity(self) -> float:
        return math.exp(-self.log_prob / self.tokens)


def prime_ids(vocab_words: Sequence[str], prime: Iterable[str]) -> list[int]:
    """Ids of the prime words; every one must be in the vocabulary (UNKNOWN_TOKEN is never generated)."""
    words = list(prime)
    ids = _vocabulary(vocab_words).encode(words)
    missing = [word for word, i in zip(words, ids) if i == UNKNOWN_ID]
    if missing:
        raise RnnlmError(f"prime words {missing} are not in the model's vocabulary; choose words it knows")
    return ids.tolist()


def _vocabulary(vocab_words: Sequence[str]) -> Vocabulary:
    # Counts do not matter for encoding words.
    return Vocabulary(list(vocab_words), np.zeros(len(vocab_words), dtype=np.int64))


def _primed(model, batch_size: int, start: list[int]):
    """State after reading the start of the stream (`_stream_start`), and the next-token log-probabilities."""
    state = model.initial_state(batch_size)
    for token in start:
        log_probs, state = model.step(np.full(batch_size, token, dtype=np.int32), state)
    return log_probs, state


def _stream_start(model, vocab_words: Sequence[str], context: Sequence[Sequence[str]], prime_part: list[int]) -> list[int]:
    """The tokens read before the first generated word: the context sentences as a document stream
    ([SENTENCE_START] s_1 [SENTENCE_END] s_2 ... [SENTENCE_END]), then the prime words. Context words
    outside the vocabulary are read as UNKNOWN_TOKEN, as in training."""
    if context and not streams.in_context(model):
        raise RnnlmError("this model reads one sentence at a time (context: sentence); give a one-sentence prime")
    vocabulary = _vocabulary(vocab_words)
    start = [SENTENCE_START_ID]
    for sentence in context:
        start += [*vocabulary.encode(list(sentence)).tolist(), SENTENCE_END_ID]
    return start + prime_part


def sample_sentences(model, vocab_words: Sequence[str], num_sentences: int, min_length: int = 7,
                     max_length: int = 40, temperature: float = 1.0, seed: int = 0,
                     prime: Sequence[str] = (), context: Sequence[Sequence[str]] = ()) -> list[list[str]]:
    """`num_sentences` sentences drawn from the model, each of min_length..max_length words, each
    starting with the `prime` words; a document-mode model reads the `context` sentences first."""
    if temperature <= 0:
        raise RnnlmError(f"temperature must be positive, got {temperature}")
    if not 1 <= min_length <= max_length:
        raise RnnlmError(f"need 1 <= min_length <= max_length, got {min_length} and {max_length}")
    prime_part = prime_ids(vocab_words, prime)
    if len(prime_part) > max_length:
        raise RnnlmError(f"the prime has {len(prime_part)} words, more than max_length={max_length}")
    start = _stream_start(model, vocab_words, context, prime_part)
    backend, xp = model.backend, model.backend.xp
    rng = np.random.default_rng(seed)
    accepted: list[list[int]] = []
    attempts = 0
    while len(accepted) < num_sentences:
        if attempts >= MAX_ATTEMPTS_PER_SENTENCE * num_sentences:
            raise RnnlmError(
                f"only {len(accepted)} of {num_sentences} sampled sentences had {min_length} to {max_length} "
                f"words after {attempts} attempts; widen the length limits or train the model longer"
            )
        # Draw twice what is missing at once: rejections are common for an untrained model. At most
        # SAMPLE_BATCH_ROWS rows (and SAMPLE_BATCH_ELEMENTS logits) at a time, so memory is bounded.
        batch = min(2 * (num_sentences - len(accepted)), SAMPLE_BATCH_ROWS,
                    max(1, SAMPLE_BATCH_ELEMENTS // len(vocab_words)))
        attempts += batch
        log_probs, state = _primed(model, batch, start)
        tokens = np.empty((batch, max_length - len(prime_part) + 1), dtype=np.int64)
        finished = np.zeros(batch, dtype=bool)
        for step in range(tokens.shape[1]):
            # Inverse-CDF sampling on the device, with the uniforms drawn on the host: one seed gives
            # the same sentences on every device, and only the B chosen ids come back (the loop must
            # see them to know which sentences ended).
            logits = log_probs.astype(xp.float64) / temperature
            logits[:, [SENTENCE_START_ID, UNKNOWN_ID]] = -np.inf
            probs = xp.exp(logits - logits.max(axis=1, keepdims=True))
            cumulative = xp.cumsum(probs, axis=1)
            draws = backend.asarray(rng.random(batch))[:, None] * cumulative[:, -1:]
            choice = backend.to_host(xp.minimum((cumulative <= draws).sum(axis=1), len(vocab_words) - 1))
            choice[finished] = SENTENCE_END_ID
            tokens[:, step] = choice
            finished |= choice == SENTENCE_END_ID
            if finished.all():
                break
            log_probs, state = model.step(choice.astype(np.int32), state)
        for row in tokens[finished]:
            words = [*prime_part, *row[: int(np.argmax(row == SENTENCE_END_ID))].tolist()]
            if min_length <= len(words) <= max_length and len(accepted) < num_sentences:
                accepted.append(words)
    return [[vocab_words[i] for i in words] for words in accepted]


# Beam search keeps sentences diverse in two ways. During the search (diverse beam search): the
# hypotheses form `beam_width` groups of DIVERSE_GROUP_WIDTH each, and at every step a group's
# candidates lose DIVERSITY_PENALTY nats (for choosing only: the scores stay the model's) per time an
# earlier group chose the same word at that step, so the groups explore different sentences instead
# of all following the single most probable opening. At the end: a finished sentence that shares
# more than MAX_BIGRAM_OVERLAP of its word bigrams (SENTENCE_START and SENTENCE_END included,
# counted in the shorter sentence) with a more probable kept sentence is a near-duplicate, dropped.
MAX_BIGRAM_OVERLAP = 0.5
DIVERSE_GROUP_WIDTH = 4
DIVERSITY_PENALTY = 2.0


def _bigrams(words: Sequence[str]) -> set[tuple[str, str]]:
    padded = ["<s>", *words, "</s>"]
    return set(zip(padded, padded[1:]))


def bigram_overlap(a: Sequence[str], b: Sequence[str]) -> float:
    """Share of the shorter sentence's bigrams (with sentence boundaries) that the other has too."""
    first, second = _bigrams(a), _bigrams(b)
    return len(first & second) / min(len(first), len(second))


def _distinct(sentences: list[ScoredSentence], limit: int, max_overlap: float) -> list[ScoredSentence]:
    """The most probable `limit` sentences, each no near-duplicate of a more probable one kept."""
    kept: list[ScoredSentence] = []
    for sentence in sorted(sentences, key=lambda s: -s.log_prob):
        if len(kept) == limit:
            break
        if all(bigram_overlap(sentence.words, other.words) <= max_overlap for other in kept):
            kept.append(sentence)
    return kept


def _candidates(scores: np.ndarray, log_probs: np.ndarray, length: int, min_length: int, max_length: int) -> np.ndarray:
    """(beams, C) scores of every continuation: never UNKNOWN_TOKEN or SENTENCE_START, no
    SENTENCE_END before `min_length` words, nothing else at `max_length`."""
    candidates = scores[:, None] + log_probs.astype(np.float64)
    candidates[:, [SENTENCE_START_ID, UNKNOWN_ID]] = -np.inf
    if length < min_length:
        candidates[:, SENTENCE_END_ID] = -np.inf
    if length == max_length:
        candidates[:, np.arange(candidates.shape[1]) != SENTENCE_END_ID] = -np.inf
    return candidates


def _pick_per_group(candidates: np.ndarray, group_of: np.ndarray, groups: int, group_width: int):
    """Each group's `group_width` best continuations, a word that earlier groups chose at this step
    penalised by DIVERSITY_PENALTY per choice: (parent rows, next words, scores, groups), or None
    when no continuation is left."""
    vocab_size = candidates.shape[1]
    chosen_words = np.zeros(vocab_size)  # times earlier groups chose each word at this step
    picked = []
    for group in range(groups):
        rows = np.flatnonzero(group_of == group)
        penalised = (candidates[rows] - DIVERSITY_PENALTY * chosen_words[None, :]).ravel()
        keep = min(group_width, int(np.isfinite(penalised).sum()))
        if keep == 0:
            continue
        best = np.argpartition(-penalised, keep - 1)[:keep]
        best = best[np.argsort(-penalised[best], kind="stable")]
        parent_rows, next_words = np.divmod(best, vocab_size)
        parents = rows[parent_rows]
        np.add.at(chosen_words, next_words[next_words != SENTENCE_END_ID], 1)
        picked.append((parents, next_words, candidates[parents, next_words], np.full(keep, group)))
    if not picked:
        return None
    return tuple(np.concatenate(part) for part in zip(*picked))


def beam_search(model, vocab_words: Sequence[str], beam_width: int = 5, min_length: int = 7,
                max_length: int = 40, prime: Sequence[str] = (), context: Sequence[Sequence[str]] = (),
                max_overlap: float = MAX_BIGRAM_OVERLAP) -> list[ScoredSentence]:
    """The `beam_width` most probable distinct sentences of min_length..max_length words (a
    document-mode model reads the `context` sentences first; log-probabilities are given them).

    A sentence ends only where beam search chooses SENTENCE_END among the best continuations of
    its group's open hypotheses (SENTENCE_END competes with the words; it is not allowed before
    `min_length` words and is the only continuation at `max_length`), so sentences do not stop
    mid-phrase just because shorter sentences are more probable. Hypotheses never contain
    UNKNOWN_TOKEN or SENTENCE_START. The groups and the near-duplicate rule (module constants
    above) keep the sentences diverse; max_overlap=1 turns both off: one group of `beam_width`
    hypotheses, every finished sentence kept (plain beam search). The search stops once no open
    hypothesis can beat the kept sentences (log probabilities only fall as a sentence grows); fewer
    than `beam_width` sentences come back only if fewer distinct ones ended.
    """
    if beam_width < 1 or not 1 <= min_length <= max_length:
        raise RnnlmError(f"need beam_width >= 1 and 1 <= min_length <= max_length, got {beam_width}, {min_length}, {max_length}")
    prime_part = prime_ids(vocab_words, prime)
    if len(prime_part) > max_length:
        raise RnnlmError(f"the prime has {len(prime_part)} words, more than max_length={max_length}")
    diverse = max_overlap < 1
    groups, group_width = (beam_width, DIVERSE_GROUP_WIDTH) if diverse else (1, beam_width)
    backend = model.backend
    # Every group starts from the primed hypothesis.
    log_probs, state = _primed(model, groups, _stream_start(model, vocab_words, context, prime_part))
    words = np.zeros((groups, 0), dtype=np.int64)
    scores = np.zeros(groups)
    group_of = np.arange(groups)
    finished: list[ScoredSentence] = []
    for length in range(len(prime_part), max_length + 1):
        # One deliberate transfer per step of the (beams, C) scores: the bookkeeping (groups,
        # finished sentences, stable tie order) is host logic, and one transfer costs less than the
        # several small synchronisations a device-side top-k and end-of-sentence check would need.
        candidates = _candidates(scores, backend.to_host(log_probs), length, min_length, max_length)
        picked = _pick_per_group(candidates, group_of, groups, group_width)
        if picked is None:
            break
        parents, next_words, picked_scores, picked_groups = picked
        ends = next_words == SENTENCE_END_ID
        for parent, score in zip(parents[ends], picked_scores[ends]):
            finished.append(ScoredSentence([vocab_words[i] for i in (*prime_part, *words[parent])],
                                           float(score), length + 1, 0))
        finished = _distinct(finished, beam_width, max_overlap)
        open_ = ~ends
        parents, next_words, open_scores, group_of = parents[open_], next_words[open_], picked_scores[open_], picked_groups[open_]
        if len(open_scores) == 0 or (len(finished) == beam_width and open_scores.max() <= finished[-1].log_prob):
            break
        words = np.concatenate([words[parents], next_words[:, None]], axis=1)
        scores = open_scores
        log_probs, state = model.step(next_words.astype(np.int32), state[backend.asarray(parents)])
    return finished


def score_sentences(model, vocab_words: Sequence[str], sentences: Sequence[Sequence[str]],
                    doc_offsets: Sequence[int] | None = None,
                    unknown_word_types: int | None = None) -> list[ScoredSentence]:
    """Log-probability and perplexity of each tokenized sentence (SENTENCE_END predicted and counted),
    each unknown word's share of UNKNOWN_TOKEN's probability being 1 / unknown_word_types (default:
    the vocabulary's size; see the module doc).

    A document-mode model reads the sentences as documents (`doc_offsets`, d + 1 sentence indices;
    None: all of them one document) and scores each given the sentences before it in its document."""
    if not sentences:
        return []
    vocabulary = _vocabulary(vocab_words)
    # Words outside the vocabulary (and spellings of special tokens) are scored as UNKNOWN_TOKEN.
    ids = [vocabulary.encode(sentence) for sentence in sentences]
    unknown = [int((row == UNKNOWN_ID).sum()) for row in ids]
    in_context = streams.in_context(model)
    split = Split.from_ids(np.concatenate(ids), np.array([len(row) for row in ids], dtype=np.int64),
                           doc_offsets=([0, len(ids)] if doc_offsets is None else doc_offsets) if in_context else None)
    log_probs = np.empty(len(ids))
    if in_context:
        per_token = streams.token_log_probs(model, split, rows=SCORE_BATCH_SIZE)
        log_probs[:] = np.add.reduceat(per_token, split.offsets[:-1])
    else:
        for first in range(0, len(ids), SCORE_BATCH_SIZE):
            rows = np.arange(first, min(first + SCORE_BATCH_SIZE, len(ids)))
            x, y, mask = split.batch(rows)
            per_token = model.token_log_probs(x, y, mask)  # host batch in, host log-probabilities out
            log_probs[rows] = np.asarray(per_token, dtype=np.float64).sum(axis=0)
    if not np.isfinite(log_probs).all():
        raise RnnlmError("the model gave a NaN or infinite log-probability: its parameters are corrupt; retrain it")
    log_probs -= np.asarray(unknown, dtype=np.float64) * math.log(unknown_word_types or len(vocab_words))
    return [ScoredSentence(list(s), float(lp), int(n), u) for s, lp, n, u in zip(sentences, log_probs, split.lengths, unknown)]


SAMPLES_COLUMNS_PREFIX = "# columns: "


def format_samples(sampled: list[list[str]], beam: list[ScoredSentence] | None, settings: str,
                   display: Callable[[list[str]], str] = " ".join) -> str:
    """samples.txt: two sections, each a '#' title line, a '# columns: ...' line, then one sentence a
    line with tab-separated columns: the sampled sentences as `text, tokens`, then the beam-search
    ones as `log_prob, text, tokens`, most probable first (`beam` None: beam search was off, and its
    section says so without sentences). `text` is `display(tokens)` (detokenized),
    `tokens` the words joined by single spaces, as `rnnlm score --pretokenized` reads them."""
    lines = [f"# sampled sentences ({settings})", f"{SAMPLES_COLUMNS_PREFIX}text, tokens",
             *(f"{display(s)}\t{' '.join(s)}" for s in sampled)]
    if beam is None:
        lines.append("# beam search: off (beam_width 0)")
    else:
        lines += [f"# beam search: the {len(beam)} most probable distinct sentences",
                  f"{SAMPLES_COLUMNS_PREFIX}log_prob (natural log), text, tokens"]
        lines += [f"{s.log_prob:.4f}\t{display(s.words)}\t{' '.join(s.words)}" for s in beam]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class GenerateConfig:
    """The `generate:` block of config.yaml."""

    num_sentences: int = 20
    min_length: int = 7
    max_length: int = 40
    temperature: float = 1.0
    seed: int = 0
    beam_width: int = 5
    prime: str = ""

    def __post_init__(self):
        # Checked here, before a model is loaded, so that a bad setting fails at once.
        def integer(value) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        def between(value, low, high) -> bool:
            return integer(value) and low <= value <= high

        checks = [
            (between(self.num_sentences, 1, MAX_NUM_SENTENCES), "num_sentences", f"an integer 1..{MAX_NUM_SENTENCES}"),
            (between(self.min_length, 1, MAX_SENTENCE_WORDS), "min_length", f"an integer 1..{MAX_SENTENCE_WORDS}"),
            (between(self.max_length, 1, MAX_SENTENCE_WORDS), "max_length", f"an integer 1..{MAX_SENTENCE_WORDS}"),
            (integer(self.seed) and self.seed >= 0, "seed", "an integer >= 0"),
            (between(self.beam_width, 0, MAX_BEAM_WIDTH), "beam_width",
             f"an integer 0..{MAX_BEAM_WIDTH} (0: no beam search)"),
            (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature) and self.temperature > 0,
             "temperature", "a finite positive number"),
            (isinstance(self.prime, str), "prime", "text"),
        ]
        for ok, name, wanted in checks:
            if not ok:
                raise RnnlmError(f"generate setting {name} must be {wanted}, got {getattr(self, name)!r}")
        if self.min_length > self.max_length:
            raise RnnlmError(f"generate setting min_length ({self.min_length}) exceeds max_length ({self.max_length})")


@dataclass(frozen=True)
class TrainedModel:
    """A trained model with the tokenization of its training text: text in, text out, e.g.
    `TrainedModel.load("results/models/gru/params.npz").sample(3)` (README: "From Python")."""

    model: RNNLM
    words: list[str]             # the vocabulary, id order
    metadata: dict               # the params file's metadata (tokenization, training summary)
    tokenizer: WordTokenizer     # spells text like the training text

    @classmethod
    def load(cls, params_path, device: str = "auto") -> "TrainedModel":
        model, words, metadata = load_trained(params_path, device)
        return cls(model, words, metadata, WordTokenizer.of_model(metadata))

    def display(self, tokens: Sequence[str]) -> str:
        """Readable text of `tokens`; sentence-initial capital restored when the text was lowercased."""
        return detokenize(list(tokens), capitalize=self.tokenizer.lowercase)

    def prime(self, text: str) -> tuple[list[list[str]], list[str]]:
        """(context sentences, words starting the generated sentence) of a prime. A document-mode
        model splits a paragraph into sentences (installed Punkt, else Punkt's defaults): all but
        the last are context; a sentence-mode model reads the whole prime as one sentence."""
        if not streams.in_context(self.model) or not text.strip():
            return [], self.tokenizer.tokenize(text)
        splitter = installed_sentence_splitter() or PunktSentenceTokenizer()
        sentences = DocumentTokenizer(splitter, self.tokenizer).sentences(text)
        return sentences[:-1], sentences[-1] if sentences else []

    def sample(self, num_sentences: int = 1, prime: str = "", **options) -> list[str]:
        """Sampled sentences as text; `options` are `sample_sentences`' (min_length, temperature, seed...)."""
        context, words = self.prime(prime)
        sampled = sample_sentences(self.model, self.words, num_sentences, prime=words, context=context, **options)
        return [self.display(sentence) for sentence in sampled]

    def score(self, sentences: Iterable[str], pretokenized: bool = False,
              doc_offsets: Sequence[int] | None = None) -> list[ScoredSentence]:
        """Log-probability and perplexity of each sentence, tokenized like the training text
        (`doc_offsets`: the documents a document-mode model reads them as, see `score_sentences`)."""
        return score_sentences(self.model, self.words,
                               [self.tokenizer.tokenize(text, pretokenized) for text in sentences], doc_offsets,
                               self.metadata.get("unknown_word_types"))


def run_generation(params_path, samples_path, config: GenerateConfig, device: str = "auto") -> str:
    """The generate stage from files: parameters -> samples.txt (see `format_samples`), unless
    `samples_path` is None; returns the text."""
    lm = TrainedModel.load(params_path, device)
    c = config
    context, prime_words = lm.prime(c.prime)
    sampled = sample_sentences(lm.model, lm.words, c.num_sentences, c.min_length, c.max_length, c.temperature,
                               c.seed, prime_words, context)
    beam = (beam_search(lm.model, lm.words, c.beam_width, c.min_length, c.max_length, prime_words, context)
            if c.beam_width else None)
    settings = f"temperature {c.temperature:g}, seed {c.seed}, {c.min_length} to {c.max_length} words"
    if prime_words:
        settings += f", prime {c.prime!r}"
    text = printable(format_samples(sampled, beam, settings, lm.display))
    if samples_path is not None:
        write_text(samples_path, text)
    return text


TOTAL_PREFIX = "# total: "


def format_scores(scored: list[ScoredSentence], rank: bool = False) -> str:
    """TSV, one row per sentence: log_prob, perplexity, tokens, unknown, sentence (most probable first
    if `rank`), then a '# total: ' line for the whole input: its log_prob, its perplexity (per
    predicted token over all sentences), tokens, unknown words and sentences."""
    rows = sorted(scored, key=lambda s: -s.log_prob) if rank else scored
    lines = ["log_prob\tperplexity\ttokens\tunknown\tsentence"]
    lines += [f"{s.log_prob:.4f}\t{s.perplexity:.4f}\t{s.tokens}\t{s.unknown}\t{' '.join(s.words)}" for s in rows]
    log_prob, tokens = sum(s.log_prob for s in scored), sum(s.tokens for s in scored)
    perplexity = f"{math.exp(-log_prob / tokens):.4f}" if tokens else "n/a"
    lines.append(f"{TOTAL_PREFIX}log_prob {log_prob:.4f}, perplexity {perplexity}, {tokens} tokens, "
                 f"{sum(s.unknown for s in scored)} unknown words, {len(scored)} sentences")
    return "\n".join(lines) + "\n"
