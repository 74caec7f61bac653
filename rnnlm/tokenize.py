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

import itertools
import logging
import multiprocessing
import platform
import re
from pathlib import Path
from typing import Iterable, Iterator

import nltk
from nltk.tokenize import NLTKWordTokenizer
from nltk.tokenize.punkt import PunktSentenceTokenizer, PunktTokenizer, PunktTrainer
from nltk.tokenize.treebank import TreebankWordDetokenizer

from rnnlm.corpus import iter_documents
from rnnlm.io import RnnlmError, atomic_path, write_json

log = logging.getLogger(__name__)

# Punkt learns from a prefix of the corpus this long; enough for its statistics, and it keeps
# training time bounded on large corpora.
PUNKT_TRAINING_CHARACTERS = 2_000_000
DOCUMENTS_PER_TASK = 256
# Tasks in flight per worker process: enough to keep every worker busy, few enough that memory
# stays bounded (a pool fed a whole corpus at once would queue all of it).
TASKS_IN_FLIGHT_PER_PROCESS = 4
# Curly and low-9 single and double quotation marks -> the ASCII ones NLTK's tokenizer knows.
# The sentences-file contract (docs/data.md): one sentence a line, tokens joined by single spaces,
# one empty line between documents. Sentence lines are never empty.
DOCUMENT_SEPARATOR = "\n"
TYPOGRAPHIC_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'",
                                    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"'})


def installed_sentence_splitter() -> PunktSentenceTokenizer | None:
    try:
        return PunktTokenizer("english")
    except LookupError:
        return None


def train_sentence_splitter(documents: Iterable[str], max_characters: int = PUNKT_TRAINING_CHARACTERS) -> tuple[PunktSentenceTokenizer, int]:
    """Train Punkt on the leading documents (whole documents, up to `max_characters`); reads no further."""
    sample, size = [], 0
    for document in documents:
        if sample and size + len(document) > max_characters:
            break
        sample.append(document[:max_characters])  # a first document longer than the cap is cut too
        size += len(sample[-1]) + 2
    trainer = PunktTrainer()
    trainer.train("\n\n".join(sample), finalize=True)
    return PunktSentenceTokenizer(trainer.get_params()), len(sample)


def sentence_splitter_for(documents: Iterable[str]) -> tuple[PunktSentenceTokenizer, str]:
    """Installed English Punkt if available, else one trained on the leading `documents`; and where it came from."""
    splitter = installed_sentence_splitter()
    if splitter is not None:
        return splitter, "installed punkt_tab/english"
    splitter, used = train_sentence_splitter(documents)
    return splitter, f"trained on the corpus ({used} documents)"


# --- word tokenizer ------------------------------------------------------------------------------

# Guard of the whitespace-collapsing substitution: a run of spaces or any other whitespace character.
_WHITESPACE_RUN = ("  ",)
# How a substitution's guard is checked: the text contains one of a set of characters, or one of
# some substrings, or a whitespace run; the lowercased text contains a substring; or no guard (the padding).
_CHARACTERS, _SUBSTRINGS, _WHITESPACE, _LOWERCASE, _PAD = "characters", "substrings", "whitespace", "lowercase", "pad"
# For each of NLTKWordTokenizer's substitutions (by pattern source): substrings of which the text
# must contain at least one for the pattern to match. For the case-insensitive contraction
# patterns: the substring their lowercased text must contain, chosen without i, k and s, the ASCII
# letters that (?i) also matches in other scripts (dotless i, Kelvin sign, long s).
_ANY_OF = {
    "([«“‘„]|[`]+)": tuple("«“‘„`"),
    r"^\"": ('"',),
    "(``)": ("``",),
    r"([ \(\[{<])(\"|\'{2})": ('"', "''"),
    r"(?i)(?<!\w)(\')(?!(?:re|ve|ll|m|t|s|d|n)\b)(?=\w)": ("'",),
    r'([^\.])(\.)([\]\)}>"\'»”’ ]*+)\s*$': (".",),
    r"([:,])([^\d])": (":", ","),
    r"([:,])$": (":", ","),
    r"\.{2,}": ("..",),
    "[;@#$%&]": tuple(";@#$%&"),
    "[\\u2012-\\u2015]": tuple("\u2012\u2013\u2014\u2015"),
    r'([^\.])(\.)([\]\)}>"\']*)\s*$': (".",),
    "[?!]": ("?", "!"),
    "([^'])' ": ("' ",),
    "[*]": ("*",),
    r"[\]\[\(\)\{\}\<\>]": tuple("[](){}<>"),
    "--": ("--",),
    "([»”’])": tuple("»”’"),
    r"\s+": _WHITESPACE_RUN,
    "''": ("''",),
    '"': ('"',),
    r"([^' ])('[sS]|'[mM]|'[dD]|') ": ("'",),
    r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) ": ("'",),
}
_LOWERCASE_ANY_OF = {
    r"(?i)\b(can)(?#X)(not)\b": "cannot",
    r"(?i)\b(d)(?#X)('ye)\b": "d'ye",
    r"(?i)\b(gim)(?#X)(me)\b": "mme",
    r"(?i)\b(gon)(?#X)(na)\b": "gonna",
    r"(?i)\b(got)(?#X)(ta)\b": "gotta",
    r"(?i)\b(lem)(?#X)(me)\b": "lemme",
    r"(?i)\b(more)(?#X)('n)\b": "more'n",
    r"(?i)\b(wan)(?#X)(na)(?=\s)": "wanna",
    r"(?i) ('t)(?#X)(is)\b": "'t",
    r"(?i) ('t)(?#X)(was)\b": "'t",
}
# Sentences that exercise every substitution; the fast tokenizer is used only if it agrees with
# NLTK's on all of them (another NLTK version may have changed the rules).
_PROBES = (
    'He said, "I cannot go--not today..." (really?) [no] {x} <y> & 50% @ #1 ; ok: 3:4 1,000.',
    "'Tis true: I'd gimme 'em, gonna lemme wanna gotta d'ye more'n ’twas « non » „ja“ ‘quote’ *star* `tick`.",
    "They'll've done it—twice – \u2012 \u2015 ''quoted'' 'single' rock 'n' roll's fans' Mr. Smith. ",
    "\"Start with a quote.\"\tTabs  and\u00a0spaces\u2028lines!  ",
    "CANNOT WANNA GONNA 'TWAS 'TIS THEY'RE I'M YOU'VE WE'LL DON'T.",
)


class NLTKWordTokens:
    """NLTK's word tokenizer (`NLTKWordTokenizer`, what `nltk.word_tokenize` uses): same tokens, faster.

    NLTK applies about thirty regular-expression substitutions to every sentence, each through its
    ReDoS-guarded `regex` wrapper. Here the same patterns, read from NLTK's class at run time, are
    compiled with the standard `re` module and a substitution is skipped when the text lacks every
    substring it needs (most sentences need only a few). If the patterns are not the ones this
    table knows, or the result differs from NLTK's on the probe sentences, NLTK's own tokenizer is
    used instead.
    """

    def __init__(self):
        self.reference = NLTKWordTokenizer()
        self.steps = self._steps()
        self.fast = self.steps is not None and all(self._fast_tokenize(text) == self.reference.tokenize(text) for text in _PROBES)
        if not self.fast:
            log.warning("NLTK %s word tokenizer: unknown patterns or results; using NLTK's own (slower) tokenizer", nltk.__version__)

    @staticmethod
    def _steps():
        """(compiled pattern, replacement, guard kind, guard) in NLTK's order, or None for unknown patterns."""
        tokenizer = NLTKWordTokenizer
        groups = [tokenizer.STARTING_QUOTES, tokenizer.PUNCTUATION, [tokenizer.PARENS_BRACKETS],
                  [tokenizer.DOUBLE_DASHES], None, tokenizer.ENDING_QUOTES,
                  [(pattern, r" \1 \2 ") for pattern in tokenizer.CONTRACTIONS2 + tokenizer.CONTRACTIONS3]]
        steps = []
        for group in groups:
            if group is None:  # NLTK surrounds the text with spaces before the ending quotes
                steps.append((None, None, _PAD, None))
                continue
            for pattern, replacement in group:
                source = getattr(pattern, "_rx", pattern).pattern  # nltk.redos.TimedPattern wraps a `regex` pattern
                if source in _LOWERCASE_ANY_OF:
                    kind, guard = _LOWERCASE, _LOWERCASE_ANY_OF[source]
                elif source not in _ANY_OF:
                    return None
                elif _ANY_OF[source] is _WHITESPACE_RUN:
                    kind, guard = _WHITESPACE, None
                elif all(len(part) == 1 for part in _ANY_OF[source]):
                    kind, guard = _CHARACTERS, frozenset(_ANY_OF[source])
                else:
                    kind, guard = _SUBSTRINGS, _ANY_OF[source]
                steps.append((re.compile(source), replacement, kind, guard))
        return steps

    def _fast_tokenize(self, text: str) -> list[str]:
        characters = set(text)
        lowered = None
        for pattern, replacement, kind, guard in self.steps:
            if kind is _PAD:
                text = " " + text + " "
                characters.add(" ")
                continue
            if kind is _CHARACTERS:
                if guard.isdisjoint(characters):
                    continue
            elif kind is _SUBSTRINGS:
                if not any(part in text for part in guard):
                    continue
            elif kind is _WHITESPACE:
                if "  " not in text and text.isprintable():  # every other whitespace character is unprintable
                    continue
            else:
                if lowered is None:
                    lowered = text.lower()
                if guard not in lowered:
                    continue
            changed = pattern.sub(replacement, text)
            if changed != text:
                text, characters, lowered = changed, set(changed), None
        return text.split()

    def tokenize(self, text: str) -> list[str]:
        return self._fast_tokenize(text) if self.fast else self.reference.tokenize(text)
class WordTokenizer:
    """One sentence -> word tokens (never containing whitespace), spelled as the training text is:
    quotes normalised and lowercased when configured, then NLTK's word tokenizer."""

    def __init__(self, lowercase: bool, normalize_quotes: bool):
        self.lowercase = lowercase
        self.normalize_quotes = normalize_quotes
        self.word_tokenizer = NLTKWordTokens()

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
        try:
            # Normalised before splitting, so Punkt sees the same quotes in every document.
            for sentence in self.sentence_splitter.tokenize(self.word_tokenizer.normalize(document)):
                tokens = self.word_tokenizer.tokenize(sentence)
                if tokens:
                    sentences.append(tokens)
        except TimeoutError:  # NLTK's time limit on one regular-expression call
            raise RnnlmError(
                f"a document of {len(document):,} characters took too long to split into sentences (NLTK's regular-"
                "expression time limit); separate its paragraphs by blank lines, or re-run the download stage, which "
                "cuts documents longer than rnnlm.corpus.MAX_DOCUMENT_CHARACTERS"
            ) from None
        return sentences

    def lines(self, documents: Iterable[str]) -> list[str]:
        """Space-joined sentences of `documents`, in order (document boundaries not marked)."""
        return [" ".join(tokens) for document in documents for tokens in self.sentences(document)]

    def block(self, documents: list[str]) -> "SentenceBlock":
        """The sentences of `documents` as one text block, with what the stage's statistics need.

        A document's sentences are consecutive lines; one empty line separates documents (a
        document without any word token leaves no trace, so empty lines never repeat)."""
        texts: list[str] = []
        words: set[str] = set()
        sentences = tokens = 0
        for document in documents:
            lines = [" ".join(sentence) for sentence in self.sentences(document)]
            if not lines:
                continue
            for line in lines:
                split = line.split(" ")
                tokens += len(split)
                words.update(split)
            sentences += len(lines)
            texts.append("\n".join(lines) + "\n")
        return SentenceBlock(DOCUMENT_SEPARATOR.join(texts), len(documents), sentences, tokens, words)


class SentenceBlock:
    """Sentence lines of consecutive documents (`text`, newline-terminated, documents separated by
    DOCUMENT_SEPARATOR; empty when no document holds a word token) and their counts."""

    __slots__ = ("text", "documents", "sentences", "tokens", "words")

    def __init__(self, text: str, documents: int, sentences: int, tokens: int, words: set[str]):
        self.text, self.documents, self.sentences, self.tokens, self.words = text, documents, sentences, tokens, words


# A worker process's tokenizer, set once by the pool initializer instead of being sent with every task.
_worker_tokenizer: DocumentTokenizer | None = None


def _init_worker(tokenizer: DocumentTokenizer) -> None:
    global _worker_tokenizer
    _worker_tokenizer = tokenizer


def _worker_block(documents: list[str]) -> SentenceBlock:
    return _worker_tokenizer.block(documents)


def _tasks(documents: Iterable[str]) -> Iterator[list[str]]:
    iterator = iter(documents)
    while task := list(itertools.islice(iterator, DOCUMENTS_PER_TASK)):
        yield task


def tokenize_blocks(documents: Iterable[str], tokenizer: DocumentTokenizer, processes: int = 1) -> Iterator[SentenceBlock]:
    """Yield the sentences of `documents` as blocks of DOCUMENTS_PER_TASK documents, in document order,
    tokenized by up to `processes` processes. `documents` is read lazily: memory holds a few tasks per
    process, whatever the corpus size."""
    tasks = _tasks(documents)
    if processes <= 1:
        yield from map(tokenizer.block, tasks)
        return
    window = processes * TASKS_IN_FLIGHT_PER_PROCESS
    first = list(itertools.islice(tasks, window))
    if len(first) <= 1:
        yield from map(tokenizer.block, first)
        return
    # fork starts workers without re-importing NLTK; spawn is the portable fallback.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(processes, initializer=_init_worker, initargs=(tokenizer,)) as pool:
        pending = [pool.apply_async(_worker_block, (task,)) for task in first]
        # Results are taken in submission order, so the output does not depend on the number of
        # processes; each one taken frees a slot for the next task.
        while pending:
            block = pending.pop(0).get()
            task = next(tasks, None)
            if task is not None:
                pending.append(pool.apply_async(_worker_block, (task,)))
            yield block


def write_sentences(documents: Iterable[str], sentences_path: str | Path, tokenizer: DocumentTokenizer,
                    processes: int = 1) -> dict:
    """Tokenize a stream of documents into a sentences file (atomic); return its counts.

    The tokenize stage's core, reusable on any slice of a corpus (e.g. one shard): joining the
    non-empty files of consecutive slices with DOCUMENT_SEPARATOR (as `rnnlm.tokenize_shards.merge_shards` does),
    tokenized with the same `tokenizer`, gives the bytes of the whole. Counts: `documents`, `sentences`, `tokens`, and `words`, the set of distinct tokens.
    Raises RnnlmError, writing nothing, when no document holds a word token.
    """
    counts = {"documents": 0, "sentences": 0, "tokens": 0, "words": set()}
    with atomic_path(sentences_path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as handle:
        for block in tokenize_blocks(documents, tokenizer, processes):
            if block.text and counts["sentences"]:
                handle.write(DOCUMENT_SEPARATOR)
            handle.write(block.text)
            counts["documents"] += block.documents
            counts["sentences"] += block.sentences
            counts["tokens"] += block.tokens
            counts["words"] |= block.words
        if counts["sentences"] == 0:  # raised inside the block, so no empty sentences file is left behind
            raise RnnlmError("no sentence with a word token was found; use a corpus with text in it")
    return counts


def tokenize_stats(documents: int, sentences: int, tokens: int, distinct_words: int, lowercase: bool,
                   normalize_quotes: bool, punkt: str) -> dict:
    """The stage's `stats.json` (also written by the sharded stage, rnnlm.tokenize_shards)."""
    return {"documents": documents, "sentences": sentences, "tokens": tokens, "distinct_words": distinct_words,
            "lowercase": lowercase, "normalize_quotes": normalize_quotes, "punkt": punkt,
            "nltk_version": nltk.__version__, "python_version": platform.python_version()}


def tokenize_corpus(documents_path: str | Path, sentences_path: str | Path, stats_path: str | Path,
                    lowercase: bool = True, processes: int = 1, normalize_quotes: bool = True) -> dict:
    """Run the tokenize stage: stream the documents into one sentence a line (tokens joined by spaces),
    write the stats and return them."""
    documents = iter_documents(documents_path)
    first = next(documents, None)
    if first is None:
        raise RnnlmError(f"{documents_path} holds no documents; check the corpus and re-run the download stage")
    words = WordTokenizer(lowercase, normalize_quotes)
    # Punkt learns from the text it will split: the normalised one.
    splitter, punkt_source = sentence_splitter_for(map(words.normalize, iter_documents(documents_path)))
    log.info("sentence splitter: Punkt %s; %d processes", punkt_source, processes)
    tokenizer = DocumentTokenizer(splitter, words)
    try:
        counts = write_sentences(itertools.chain([first], documents), sentences_path, tokenizer, processes)
    except RnnlmError as exc:
        raise RnnlmError(f"{documents_path}: {exc}") from None
    stats = tokenize_stats(documents=counts["documents"], sentences=counts["sentences"], tokens=counts["tokens"],
                           distinct_words=len(counts["words"]), lowercase=lowercase,
                           normalize_quotes=normalize_quotes, punkt=punkt_source)
    write_json(stats_path, stats)
    log.info("%(documents)d documents -> %(sentences)d sentences, %(tokens)d tokens, %(distinct_words)d distinct words", stats)
    return stats


def read_sentences(path: str | Path):
    """Yield the token lists of a sentences file written by `tokenize_corpus` (document boundaries,
    the empty lines, skipped: `read_sentence_documents` keeps them)."""
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                tokens = line.split()
                if tokens:
                    yield tokens
    except FileNotFoundError:
        raise RnnlmError(f"{path}: file not found; run the tokenize stage first") from None


def read_sentence_documents(path: str | Path) -> Iterator[list[list[str]]]:
    """Yield the documents of a sentences file, each a list of token lists (small files and tests)."""
    document: list[list[str]] = []
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                tokens = line.split()
                if tokens:
                    document.append(tokens)
                elif document:
                    yield document
                    document = []
    except FileNotFoundError:
        raise RnnlmError(f"{path}: file not found; run the tokenize stage first") from None
    if document:
        yield document


_detokenizer = TreebankWordDetokenizer()


def detokenize(tokens: list[str], capitalize: bool = False) -> str:
    """Readable text from word tokens: the inverse of NLTK's word tokenizer (no space before
    punctuation, contractions joined, `` and '' back to ").

    Treebank detokenization attaches every lone ' to the word before it. Here lone quotes alternate
    instead, the first opening (attached to the next word: "' tis" -> "'tis") and the next closing;
    when their number is odd, the first one after a word ending in s is taken for a plural
    possessive ("dogs ' bones" -> "dogs' bones") and left out of the alternation.
    `capitalize` upper-cases the sentence's first letter (unless a digit comes first or the first word
    is an identifier starting with `_`), for text that was lowercased."""
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
        # The first letter or digit starts the sentence (a digit stays as it is); a first word that
        # is an identifier (`__dict__`, `_private`) keeps its spelling.
        first = next((i for i, ch in enumerate(text) if ch.isalnum()), None)
        if first is not None and not (first > 0 and text[first - 1] == "_"):
            text = text[:first] + text[first].upper() + text[first + 1:]
    return text
