"""Sharded tokenize stage: the same `tokens/` artifacts as `rnnlm.tokenize`, made by independent jobs.

Three steps, each its own Snakemake job (see `tokenize_shards` in the config):

1. `save_sentence_splitter`: the one piece of global state, the Punkt parameters, is chosen once for
   the whole corpus (installed English parameters, or Punkt trained on the corpus's leading
   documents exactly as the unsharded stage does) and written to a JSON file.
2. `tokenize_shard` (one job per shard): shard k of n holds the documents whose line in
   `documents.jsonl` starts in the k-th n-th of the file's bytes, so shards are balanced by size,
   each job reads only its own bytes, and no copy of the documents is made. Every shard uses the
   saved Punkt parameters; it writes its sentences, its word counts (sorted by word) and its totals.
3. `merge_shards`: joins the shards' sentences in shard order (one empty line, the document
   separator, between non-empty shards) and merges their statistics
   exactly (distinct words from a streaming merge of the sorted word lists).

Tokenizing a document depends only on the document and the Punkt parameters, so the result is
byte-identical to the unsharded stage for any number of shards.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

from rnnlm.io import RnnlmError, atomic_path, read_json, write_json, write_text
from rnnlm.tokenize import DOCUMENT_SEPARATOR, DocumentTokenizer, WordTokenizer, sentence_splitter_for, tokenize_stats, write_sentences

log = logging.getLogger(__name__)

SPLITTER_FORMAT_VERSION = 1
SHARD_NAME = re.compile(r"(\d+)-of-(\d+)")


# --- Punkt parameters, chosen once --------------------------------------------------------------


def splitter_to_json(splitter: PunktSentenceTokenizer, source: str) -> dict:
    """Punkt parameters as plain JSON, every collection sorted, so equal parameters give equal bytes."""
    params = splitter._params  # PunktSentenceTokenizer keeps them here; NLTK has no public getter
    return {
        "format_version": SPLITTER_FORMAT_VERSION,
        "source": source,
        "abbrev_types": sorted(params.abbrev_types),
        "collocations": sorted(list(pair) for pair in params.collocations),
        "sent_starters": sorted(params.sent_starters),
        "ortho_context": {word: flags for word, flags in sorted(params.ortho_context.items()) if flags},
    }


def splitter_from_json(data: dict, what: str) -> tuple[PunktSentenceTokenizer, str]:
    """The sentence splitter and its source description, back from `splitter_to_json`."""
    if not isinstance(data, dict) or data.get("format_version") != SPLITTER_FORMAT_VERSION:
        raise RnnlmError(f"{what}: not a sentence-splitter file of format {SPLITTER_FORMAT_VERSION}; "
                         "delete it and re-run the workflow")
    params = PunktParameters()
    params.abbrev_types = set(data["abbrev_types"])
    params.collocations = {tuple(pair) for pair in data["collocations"]}
    params.sent_starters = set(data["sent_starters"])
    params.ortho_context.update(data["ortho_context"])  # a defaultdict(int): unseen words read as 0
    return PunktSentenceTokenizer(params), data["source"]


def save_sentence_splitter(documents_path: str | Path, splitter_path: str | Path, normalize_quotes: bool = True) -> str:
    """Step 1: choose the Punkt parameters for the whole corpus and save them; return their source.
    As in the one-job stage, Punkt learns from the text it will split: quotes normalised if asked."""
    documents = shard_documents(documents_path, 0, 1)  # read lazily: Punkt trains on a prefix only
    first = next(documents, None)
    if first is None:
        raise RnnlmError(f"{documents_path} holds no documents; check the corpus and re-run the download stage")
    normalize = WordTokenizer(lowercase=False, normalize_quotes=normalize_quotes).normalize
    splitter, source = sentence_splitter_for(normalize(document) for document in itertools.chain([first], documents))
    write_json(splitter_path, splitter_to_json(splitter, source))
    log.info("sentence splitter: Punkt %s", source)
    return source


# --- shards ---------------------------------------------------------------------------------------


def parse_shard(name: str) -> tuple[int, int]:
    """Snakemake's scatter item "k-of-n" (1-based) -> (k - 1, n)."""
    match = SHARD_NAME.fullmatch(name)
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise RnnlmError(f"shard {name!r} is not of the form k-of-n with 1 <= k <= n")
    return int(match.group(1)) - 1, int(match.group(2))


def shard_documents(documents_path: str | Path, shard: int, shards: int) -> Iterator[str]:
    """The documents of shard `shard` (0-based) of `shards`: those whose line starts in the shard's
    byte range [shard * size // shards, (shard + 1) * size // shards). Every line belongs to exactly
    one shard, and the shards in order hold the documents in order."""
    try:
        handle = open(documents_path, "rb")
    except FileNotFoundError:
        raise RnnlmError(f"{documents_path}: file not found; run the download stage first") from None
    with handle:
        size = os.fstat(handle.fileno()).st_size
        start, end = shard * size // shards, (shard + 1) * size // shards
        position = 0
        if start > 0:
            # The line holding byte start - 1 started in an earlier shard; skip to the next line.
            handle.seek(start - 1)
            position = start - 1 + len(handle.readline())
        while position < end:
            line = handle.readline()
            if not line:
                break
            try:
                document = json.loads(line)
                if not isinstance(document, str):
                    raise ValueError("not a JSON string")
            except (ValueError, UnicodeDecodeError) as exc:
                raise RnnlmError(f"{documents_path}: the line at byte {position} is not a JSON string ({exc}); "
                                 "delete the file and re-run the download stage") from None
            position += len(line)
            yield document


def tokenize_shard(documents_path: str | Path, splitter_path: str | Path, shard_name: str,
                   sentences_path: str | Path, words_path: str | Path, stats_path: str | Path,
                   lowercase: bool = True, processes: int = 1, normalize_quotes: bool = True) -> dict:
    """Step 2: tokenize one shard with the saved Punkt parameters. Writes its sentences, its distinct
    words (one a line, sorted by code points) and its totals. A shard may be empty."""
    shard, shards = parse_shard(shard_name)
    splitter, source = splitter_from_json(read_json(splitter_path), str(splitter_path))
    tokenizer = DocumentTokenizer(splitter, WordTokenizer(lowercase, normalize_quotes))
    read = {"documents": 0, "all": False}

    def documents():
        for document in shard_documents(documents_path, shard, shards):
            read["documents"] += 1
            yield document
        read["all"] = True

    try:
        counts = write_sentences(documents(), sentences_path, tokenizer, processes)
    except RnnlmError:
        if not read["all"]:  # a bad line, not an empty shard
            raise
        # Every document was read and none holds a word token: an empty shard (the merge checks the whole).
        write_text(sentences_path, "")
        counts = {"documents": read["documents"], "sentences": 0, "tokens": 0, "words": set()}
    with atomic_path(words_path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(f"{word}\n" for word in sorted(counts["words"]))
    totals = {"shard": shard_name, "documents": counts["documents"], "sentences": counts["sentences"],
              "tokens": counts["tokens"], "lowercase": lowercase, "normalize_quotes": normalize_quotes,
              "punkt": source}
    write_json(stats_path, totals)
    log.info("shard %(shard)s: %(documents)d documents -> %(sentences)d sentences, %(tokens)d tokens", totals)
    return totals


# --- merge ----------------------------------------------------------------------------------------


def _words(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            yield line.rstrip("\n")


def distinct_words(words_paths: list[Path]) -> int:
    """The number of distinct words over all shards' sorted word lists, holding one line per shard."""
    return sum(1 for _ in itertools.groupby(heapq.merge(*(_words(path) for path in words_paths))))


def merge_shards(sentences_paths: list[str | Path], words_paths: list[str | Path], stats_paths: list[str | Path],
                 sentences_path: str | Path, stats_path: str | Path) -> dict:
    """Step 3: the shards' sentences joined in shard order (documents separated as within a shard), and the stage's statistics, exactly
    as the unsharded stage writes them."""
    shard_stats = [read_json(path) for path in stats_paths]
    settings = {(stats["lowercase"], stats["normalize_quotes"], stats["punkt"]) for stats in shard_stats}
    if len(settings) != 1:
        raise RnnlmError(f"the shards were tokenized with different settings {sorted(settings)}; "
                         "delete results/tokens and re-run the workflow")
    lowercase, normalize_quotes, source = settings.pop()
    sentences = sum(stats["sentences"] for stats in shard_stats)
    with atomic_path(sentences_path) as tmp:
        if sentences == 0:  # raised inside the block, so no empty sentences file is left behind
            raise RnnlmError("no sentence with a word token was found in any shard; use a corpus with text in it")
        with open(tmp, "wb") as out:
            written = False
            for path in sentences_paths:
                if os.path.getsize(path) == 0:  # a shard without sentences: no separator either
                    continue
                if written:
                    out.write(DOCUMENT_SEPARATOR.encode())
                with open(path, "rb") as shard:
                    shutil.copyfileobj(shard, out, 1 << 20)
                written = True
    distinct = distinct_words([Path(path) for path in words_paths])
    stats = tokenize_stats(documents=sum(stats["documents"] for stats in shard_stats), sentences=sentences,
                           tokens=sum(stats["tokens"] for stats in shard_stats), distinct_words=distinct,
                           lowercase=lowercase, normalize_quotes=normalize_quotes, punkt=source)
    write_json(stats_path, stats)
    log.info("%d shards: %d documents -> %d sentences, %d tokens, %d distinct words", len(shard_stats),
             stats["documents"], stats["sentences"], stats["tokens"], stats["distinct_words"])
    return stats
