"""Document mode (`context: document`): a split read as documents, each one stream of its sentences.

Document j of a split is its sentences doc_offsets[j]:doc_offsets[j+1] (`Split.doc_offsets`; a
split without document boundaries is one sentence per document). They are consecutive in the flat
arrays, so a document's tokens are x/y[offsets[first]:offsets[end]]. In a stream the input at the
start of every sentence but the document's first is SENTENCE_END (PTB's <eos>: the token just
predicted is fed back) instead of SENTENCE_START; the targets are the split's `y` unchanged, so
exactly the tokens of sentence mode are predicted, and a one-sentence-per-document split reads
exactly as in sentence mode.

Layout: the documents, in some order, are concatenated into one index space k = 0..N-1 and read
on B parallel rows, row b covering k in [row_start[b], row_end[b]); window w holds the steps
t = w*bptt .. (w+1)*bptt - 1 of every row (time-major), padding where a row has ended. `resets`
is 1 at each document start and at each row's first step, so the state the model carries from one
window to the next (`RNNLM.loss_and_grads(state=..., resets=..., return_state=True)`) never
crosses a document. Every window is built by index arithmetic (searchsorted over the document
starts), so memory is O(documents + window), never O(tokens).

* Training (`training_layout`): a seeded permutation of the documents per pass, concatenated and
  cut into B rows of equal length (a document may continue on the next row, from a fresh state).
* Evaluation (`evaluation_layout`): whole documents in file order on each row (none is cut), so
  every token is read with its document's full context; `token_log_probs` maps the scores back to
  the split's flat `y` positions, so metrics, interpolation and the KN mixture work token by token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from rnnlm.vocab import SENTENCE_END_ID, SENTENCE_START_ID

# Evaluation rows and steps per window: the state is carried exactly, so neither changes a score;
# they bound the index matrices and the forward cache only.
EVAL_ROWS = 256
EVAL_WINDOW = 128


def in_context(model) -> bool:
    """Whether `model` reads text as document streams (else one sentence at a time from a zero state)."""
    return model.config.context == "document"


@dataclass
class Window:
    """One window of B streams, time-major (T, B)."""

    x: np.ndarray          # int32 inputs (SENTENCE_END at a sentence start inside a document)
    y: np.ndarray          # int32 targets, the split's y
    mask: np.ndarray       # float32, 1 real, 0 padding (only at the end of a row)
    resets: np.ndarray     # float32, 1 where the state is zeroed before the step
    positions: np.ndarray  # int64 index into the split's flat y of each token, -1 at padding


class StreamLayout:
    """Documents of `split` in `order`, concatenated, read on rows [row_start[b], row_end[b])."""

    def __init__(self, split, order: np.ndarray, row_start: np.ndarray, row_end: np.ndarray):
        token_starts = split.offsets[split.doc_offsets]  # flat position of each document's start
        lengths = np.diff(token_starts)[order]
        self.split = split
        self.doc_cum = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)  # k of each document's start
        self.doc_start = token_starts[:-1][order].astype(np.int64)
        self.row_start = np.asarray(row_start, dtype=np.int64)
        self.row_end = np.asarray(row_end, dtype=np.int64)
        self.steps = int((self.row_end - self.row_start).max(initial=0))

    @property
    def rows(self) -> int:
        return len(self.row_start)

    @property
    def num_tokens(self) -> int:
        return int((self.row_end - self.row_start).sum())

    def num_windows(self, bptt: int) -> int:
        return -(-self.steps // bptt)

    def window(self, first_step: int, last_step: int) -> Window:
        """Steps first_step..last_step-1 of every row."""
        t = np.arange(first_step, last_step, dtype=np.int64)[:, None]
        k = self.row_start[None, :] + t
        real = k < self.row_end[None, :]
        k = np.where(real, k, 0)
        doc = np.searchsorted(self.doc_cum, k, side="right") - 1
        doc = np.minimum(doc, len(self.doc_start) - 1)  # k = 0 of an empty split's padding
        positions = self.doc_start[doc] + (k - self.doc_cum[doc]) if len(self.doc_start) else np.zeros_like(k)
        document_start = (k == self.doc_cum[doc]) & real
        x = np.where(real, self.split.x[positions], 0).astype(np.int32)
        y = np.where(real, self.split.y[positions], 0).astype(np.int32)
        x[(x == SENTENCE_START_ID) & real & ~document_start] = SENTENCE_END_ID
        resets = (document_start | (t == 0)) & real
        return Window(x, y, real.astype(np.float32), resets.astype(np.float32), np.where(real, positions, -1))

    def windows(self, bptt: int, start: int = 0) -> Iterator[Window]:
        """Windows `start`, `start` + 1, ... of `bptt` steps (the last one may be shorter)."""
        for w in range(start, self.num_windows(bptt)):
            yield self.window(w * bptt, min((w + 1) * bptt, self.steps))


def training_layout(split, rows: int, order: np.ndarray) -> StreamLayout:
    """The documents in `order` (a permutation), concatenated and cut into `rows` rows of equal length
    (the last one shorter)."""
    total = int(split.num_tokens)
    rows = max(1, min(rows, total))
    length = -(-total // rows)
    row_start = np.minimum(np.arange(rows, dtype=np.int64) * length, total)
    return StreamLayout(split, order, row_start, np.minimum(row_start + length, total))


def evaluation_layout(split, rows: int = EVAL_ROWS) -> StreamLayout:
    """Whole documents in file order on up to `rows` rows of about equal token counts (contiguous
    runs of documents: a row never cuts a document, so each is read from its start)."""
    offsets = split.doc_offsets
    documents = split.num_documents
    rows = max(1, min(rows, documents))
    token_starts = split.offsets[offsets]
    total = max(int(token_starts[-1]), 1)
    row_of_document = np.minimum(token_starts[:-1] * rows // total, rows - 1)
    first = np.searchsorted(row_of_document, np.arange(rows + 1), side="left")
    return StreamLayout(split, np.arange(documents), token_starts[first[:-1]], token_starts[first[1:]])


def token_log_probs(model, split, rows: int = EVAL_ROWS, window: int = EVAL_WINDOW) -> np.ndarray:
    """log p(y_i | the document's text up to i) for every token i of the split's flat `y` (float64 host array)."""
    layout = evaluation_layout(split, rows)
    scores = np.zeros(split.num_tokens, dtype=np.float64)
    state = None
    for part in layout.windows(window):
        log_probs, state = model.token_log_probs(part.x, part.y, part.mask, state=state, resets=part.resets,
                                                 return_state=True)
        real = part.positions >= 0
        scores[part.positions[real]] = log_probs[real]
    return scores


def split_loss(model, split, rows: int = EVAL_ROWS, window: int = EVAL_WINDOW) -> tuple[float, int]:
    """Summed cross-entropy over every predicted token of `split` read in context, and their number."""
    total, tokens = 0.0, 0
    state = None
    for part in evaluation_layout(split, rows).windows(window):
        loss_sum, count, state = model.loss(part.x, part.y, part.mask, state=state, resets=part.resets,
                                            return_state=True)
        total += loss_sum
        tokens += count
    return total, tokens


class TrainingWindows:
    """The training windows as one stream of passes, as the trainer's sentence batches are: pass p
    reads the documents in an order that depends only on (seed, p), packed on `rows` rows. An epoch
    takes the next windows from the cursor (`state.data_pass`, `state.pass_batches` = windows of
    that pass already trained): one whole pass, or with `epoch_tokens` N until it has trained N
    tokens. `carried` is the state after the last trained window (the trainer sets it after each
    update, the checkpoint keeps it); None at the start of a pass."""

    def __init__(self, split, rows: int, bptt: int, seed: int, epoch_tokens: int = 0):
        self.split, self.rows, self.bptt, self.seed, self.epoch_tokens = split, rows, bptt, seed, epoch_tokens
        self.cached_pass, self.layout = 0, None
        self.carried = None

    def _layout(self, data_pass: int) -> StreamLayout:
        if data_pass != self.cached_pass:
            order = np.random.default_rng([self.seed, data_pass]).permutation(self.split.num_documents)
            self.layout = training_layout(self.split, self.rows, order)
            self.cached_pass = data_pass
        return self.layout

    def epoch(self, state) -> Iterator[Window]:
        tokens = 0
        while True:
            layout = self._layout(state.data_pass)
            if state.pass_batches >= layout.num_windows(self.bptt):
                state.data_pass, state.pass_batches = state.data_pass + 1, 0
                self.carried = None
                if not self.epoch_tokens:
                    return
                continue
            first = state.pass_batches * self.bptt
            window = layout.window(first, min(first + self.bptt, layout.steps))
            yield window
            state.pass_batches += 1
            tokens += int(window.mask.sum())
            if self.epoch_tokens and tokens >= self.epoch_tokens:
                return
