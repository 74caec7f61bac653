"""Tokenize stage: documents -> sentences (NLTK Punkt) -> words (NLTK's word tokenizer).

No nltk_data download is needed: installed Punkt parameters (``punkt_tab/english``) are used when
present, otherwise Punkt is trained on the corpus itself with NLTK's unsupervised trainer, which
is deterministic for a given text. Typographic quotes and apostrophes are normalised to ASCII
(`normalize_quotes`, so that "it’s" and "it's" are one spelling), sentences are split on that text
(Punkt uses capitalisation as evidence) and lowercased afterwards.

`WordTokenizer` is the per-sentence part, shared with generation and scoring so that a prime or a
sentence to score is spelled like the training text; `detokenize` turns tokens back into text for
display.
"""

from __future__ import annotations

import collections
import logging
import multiprocessing
import platform
from pathlib import Path

import nltk
from nltk.tokenize import NLTKWordTokenizer
from nltk.tokenize.punkt import PunktSentenceTokenizer, PunktTokenizer, PunktTrainer
from nltk.tokenize.treebank import TreebankWordDetokenizer

from rnnlm.corpus import read_documents
from rnnlm.io import RnnlmError, atomic_path, write_json

log = logging.getLogger(__name__)

# Punkt learns from a prefix of the corpus this long; enough for its statistics, and it keeps
# training time bounded on large corpora.
PUNKT_TRAINING_CHARACTERS = 2_000_000
DOCUMENTS_PER_TASK = 256
# Curly and low-9 single and double quotation marks -> the ASCII ones NLTK's tokenizer knows.
TYPOGRAPHIC_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'",
                                    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"'})


def installed_sentence_splitter() -> PunktSentenceTokenizer | None:
    try:
        return PunktTokenizer("english")
    except LookupError:
        return None


def train_sentence_splitter(documents: list[str], max_characters: int = PUNKT_TRAINING_CHARACTERS) -> tuple[PunktSentenceTokenizer, int]:
    """Train Punkt on the leading documents (whole documents, up to `max_characters`)."""
    sample, size = [], 0
    for document in documents:
        if sample and size + len(document) > max_characters:
            break
        sample.append(document)
        size += len(document) + 2
    trainer = PunktTrainer()
    trainer.train("\n\n".join(sample), finalize=True)
    return PunktSentenceTokenizer(trainer.get_params()), len(sample)


def sentence_splitter_for(documents: list[str]) -> tuple[PunktSentenceTokenizer, str]:
    """Installed English Punkt if available, else one trained on `documents`; and where it came from."""
    splitter = installed_sentence_splitter()
    if splitter is not None:
        return splitter, "installed punkt_tab/english"
    splitter, used = train_sentence_splitter(documents)
    return splitter, f"trained on the corpus ({used} documents)"


class WordTokenizer:
    """One sentence -> word tokens (never containing whitespace), spelled as the training text is:
    quotes normalised and lowercased when configured, then NLTK's word tokenizer."""

    def __init__(self, lowercase: bool, normalize_quotes: bool):
        self.lowercase = lowercase
        self.normalize_quotes = normalize_quotes
        self.word_tokenizer = NLTKWordTokenizer()

    @classmethod
    def of_model(cls, metadata: dict) -> "WordTokenizer":
        """The tokenizer of a model's training text, from its params file's metadata (see `settings`);
        files from before quote normalisation existed lack the key and had none."""
        return cls(bool(metadata.get("lowercase")), bool(metadata.get("normalize_quotes", False)))

    def settings(self) -> dict:
        """What a params file records (`metadata_json`) so that `of_model` rebuilds this tokenizer."""
        return {"lowercase": self.lowercase, "normalize_quotes": self.normalize_quotes}

    def normalize(self, text: str) -> str:
        """The text with its quotes normalised (when configured); case is left for `tokenize`."""
        return text.translate(TYPOGRAPHIC_QUOTES) if self.normalize_quotes else text

    def tokenize(self, sentence: str, pretokenized: bool = False) -> list[str]:
        """Word tokens of one sentence; `pretokenized` text is split on whitespace only."""
        text = self.normalize(sentence)
        if self.lowercase:
            text = text.lower()
        return text.split() if pretokenized else self.word_tokenizer.tokenize(text)


class DocumentTokenizer:
    """Turns one document into its sentences, each a list of word tokens (never containing whitespace)."""

    def __init__(self, sentence_splitter: PunktSentenceTokenizer, word_tokenizer: WordTokenizer):
        self.sentence_splitter = sentence_splitter
        self.word_tokenizer = word_tokenizer

    def sentences(self, document: str) -> list[list[str]]:
        sentences = []
        # Normalised before splitting, so Punkt sees the same quotes in every document.
        for sentence in self.sentence_splitter.tokenize(self.word_tokenizer.normalize(document)):
            tokens = self.word_tokenizer.tokenize(sentence)
            if tokens:
                sentences.append(tokens)
        return sentences

    def lines(self, documents: list[str]) -> list[str]:
        """Space-joined sentences of `documents`, in order."""
        return [" ".join(tokens) for document in documents for tokens in self.sentences(document)]


# A worker process's tokenizer, set once by the pool initializer instead of being sent with every task.
_worker_tokenizer: DocumentTokenizer | None = None


def _init_worker(tokenizer: DocumentTokenizer) -> None:
    global _worker_tokenizer
    _worker_tokenizer = tokenizer


def _worker_lines(documents: list[str]) -> list[str]:
    return _worker_tokenizer.lines(documents)


def tokenize_documents(documents: list[str], tokenizer: DocumentTokenizer, processes: int = 1):
    """Yield the sentence lines of `documents` in document order, using up to `processes` processes."""
    tasks = [documents[start : start + DOCUMENTS_PER_TASK] for start in range(0, len(documents), DOCUMENTS_PER_TASK)]
    processes = max(1, min(processes, len(tasks)))
    if processes == 1:
        for task in tasks:
            yield from tokenizer.lines(task)
        return
    # fork starts workers without re-importing NLTK; spawn is the portable fallback.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(processes, initializer=_init_worker, initargs=(tokenizer,)) as pool:
        # imap keeps task order, so the output does not depend on the number of processes.
        for lines in pool.imap(_worker_lines, tasks):
            yield from lines


def tokenize_corpus(documents_path: str | Path, sentences_path: str | Path, stats_path: str | Path,
                    lowercase: bool = True, processes: int = 1, normalize_quotes: bool = True) -> dict:
    """Run the tokenize stage: write one sentence a line (tokens joined by spaces) and the stats."""
    documents = read_documents(documents_path)
    if not documents:
        raise RnnlmError(f"{documents_path} holds no documents; check the corpus and re-run the download stage")
    words = WordTokenizer(lowercase, normalize_quotes)
    # Punkt learns from the text it will split: the normalised one.
    splitter, punkt_source = sentence_splitter_for([words.normalize(document) for document in documents])
    log.info("sentence splitter: Punkt %s; %d processes", punkt_source, processes)
    tokenizer = DocumentTokenizer(splitter, words)
    word_counts: collections.Counter[str] = collections.Counter()
    sentences = 0
    with atomic_path(sentences_path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as handle:
        for line in tokenize_documents(documents, tokenizer, processes):
            handle.write(line + "\n")
            word_counts.update(line.split(" "))
            sentences += 1
        if sentences == 0:  # raised inside the block, so no empty sentences file is left behind
            raise RnnlmError(f"{documents_path}: no sentence with a word token was found; use a corpus with text in it")
    stats = {
        "documents": len(documents),
        "sentences": sentences,
        "tokens": sum(word_counts.values()),
        "distinct_words": len(word_counts),
        "lowercase": lowercase,
        "normalize_quotes": normalize_quotes,
        "punkt": punkt_source,
        "nltk_version": nltk.__version__,
        "python_version": platform.python_version(),
    }
    write_json(stats_path, stats)
    log.info("%(documents)d documents -> %(sentences)d sentences, %(tokens)d tokens, %(distinct_words)d distinct words", stats)
    return stats


def read_sentences(path: str | Path):
    """Yield the token lists of a sentences file written by `tokenize_corpus`."""
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                tokens = line.split()
                if tokens:
                    yield tokens
    except FileNotFoundError:
        raise RnnlmError(f"{path}: file not found; run the tokenize stage first") from None


_detokenizer = TreebankWordDetokenizer()


def detokenize(tokens: list[str], capitalize: bool = False) -> str:
    """Readable text from word tokens: the inverse of NLTK's word tokenizer (no space before
    punctuation, contractions joined, `` and '' back to ").

    Treebank detokenization attaches every lone ' to the word before it. Here lone quotes alternate
    instead, the first opening (attached to the next word: "' tis" -> "'tis") and the next closing;
    when their number is odd, the first one after a word ending in s is taken for a plural
    possessive ("dogs ' bones" -> "dogs' bones") and left out of the alternation.
    `capitalize` upper-cases the sentence's first letter (unless a digit comes first), for text that
    was lowercased."""
    lone = [i for i, token in enumerate(tokens) if token == "'"]
    possessive = None
    if len(lone) % 2:
        possessive = next((i for i in lone if i > 0 and tokens[i - 1][-1:] in ("s", "S")), None)
    merged: list[str] = []
    attach_next = False
    quotes = 0
    for index, token in enumerate(tokens):
        if attach_next:
            merged[-1] += token
            attach_next = False
            continue
        merged.append(token)
        if token == "'" and index != possessive:
            attach_next = quotes % 2 == 0  # an opening quote joins the word after it
            quotes += 1
    text = _detokenizer.detokenize(merged)
    if capitalize:
        # The first letter or digit starts the sentence (a digit stays as it is).
        first = next((i for i, ch in enumerate(text) if ch.isalnum()), None)
        if first is not None:
            text = text[:first] + text[first].upper() + text[first + 1:]
    return text
