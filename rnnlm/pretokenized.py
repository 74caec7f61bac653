"""Standard-split corpora as they are distributed: three pretokenized files (train, valid, test).

Penn Treebank (Mikolov's `ptb.{train,valid,test}.txt`) and WikiText ship one sentence (PTB) or
one paragraph (WikiText) a line, words separated by spaces, rare words already replaced by
`<unk>`. Such a corpus is used exactly as given: no re-tokenization, no lowercasing, no
re-splitting. Each non-blank line is one unit (a "sentence" for the rest of the pipeline), its
tokens are the line's whitespace-separated fields, the corpus's unknown-word spelling becomes
UNKNOWN_TOKEN, and blank lines are skipped. The splits are written as sentences files (one unit a
line, tokens joined by single spaces) in which each split file is one document, its lines
consecutive (one stream, the PTB convention), which the vocab stage (train only) and the index
stage (each split as given) read, as they read the split stage's files for other corpora.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from rnnlm.io import RnnlmError, atomic_path, write_json
from rnnlm.vocab import UNKNOWN_TOKEN

log = logging.getLogger(__name__)

SPLIT_FILES = ("train", "valid", "test")
REPLACEMENT_CHARACTER = "\ufffd"


def convert_split(source: str | Path, sentences_path: str | Path, unknown_token: str, encoding_errors: str) -> dict:
    """Copy one pretokenized file into a sentences file, line by line; return its statistics."""
    if encoding_errors not in ("replace", "strict"):
        raise RnnlmError(f"encoding_errors must be 'replace' or 'strict', not {encoding_errors!r}")
    stats = {"path": str(Path(source).resolve()), "lines": 0, "blank_lines": 0, "sentences": 0, "tokens": 0,
             "unknown_tokens": 0, "replaced_invalid_sequences": 0}
    sha256 = hashlib.sha256()
    offset = 0
    try:
        with open(source, "rb") as raw, atomic_path(sentences_path) as tmp, \
                open(tmp, "w", encoding="utf-8", newline="\n") as sink:
            for number, line in enumerate(raw, 1):
                sha256.update(line)
                try:
                    text = line.decode("utf-8-sig" if number == 1 else "utf-8", errors=encoding_errors)
                except UnicodeDecodeError as exc:
                    raise RnnlmError(
                        f"{source} is not valid UTF-8 (line {number}, byte {offset + exc.start}: {exc.reason}); convert it "
                        "to UTF-8, or set encoding_errors: replace to replace bad bytes with U+FFFD"
                    ) from None
                offset += len(line)
                stats["replaced_invalid_sequences"] += text.count(REPLACEMENT_CHARACTER) - line.count(REPLACEMENT_CHARACTER.encode())
                tokens = text.split()
                stats["lines"] += 1
                if not tokens:
                    stats["blank_lines"] += 1
                    continue
                unknown = tokens.count(unknown_token)
                if unknown:
                    tokens = [UNKNOWN_TOKEN if token == unknown_token else token for token in tokens]
                sink.write(" ".join(tokens) + "\n")
                stats["sentences"] += 1
                stats["tokens"] += len(tokens)
                stats["unknown_tokens"] += unknown
            if stats["sentences"] == 0:  # raised inside the block, so no empty sentences file is left behind
                raise RnnlmError(f"{source} holds no words (every line is blank); point the corpus setting at the right file")
    except OSError as exc:
        raise RnnlmError(f"cannot read corpus file {source} ({exc.strerror}); fix its path in the corpus setting") from None
    stats["bytes"] = offset
    stats["sha256"] = sha256.hexdigest()
    return stats


def prepare_splits(split_files: dict[str, str | Path], sentences_paths: dict[str, str | Path], stats_path: str | Path,
                   unknown_token: str = "<unk>", encoding_errors: str = "replace",
                   split_stats_path: str | Path | None = None) -> dict:
    """The stage for standard-split corpora: write each split's sentences file and the stats (and, at
    `split_stats_path`, the split summary the split stage writes for other corpora); return the stats."""
    missing = [name for name in SPLIT_FILES if name not in split_files]
    if missing:
        raise RnnlmError(f"a standard-split corpus needs train, valid and test files; {missing} missing from the corpus setting")
    for name in SPLIT_FILES:
        if not Path(split_files[name]).is_file():
            raise RnnlmError(f"corpus file {split_files[name]} ({name}) does not exist; fix its path in the corpus setting")
    stats = {"format": "pretokenized", "unknown_token": unknown_token, "lowercase": False, "splits": {}}
    for name in SPLIT_FILES:
        try:
            split = convert_split(split_files[name], sentences_paths[name], unknown_token, encoding_errors)
        except RnnlmError:
            for written in stats["splits"]:  # a failed stage leaves no finished-looking split behind
                Path(sentences_paths[written]).unlink(missing_ok=True)
            raise
        stats["splits"][name] = split
        if split["replaced_invalid_sequences"]:
            log.warning("%s: replaced %d invalid UTF-8 byte sequences with U+FFFD", split_files[name], split["replaced_invalid_sequences"])
        log.info("%s: %d lines (%d blank), %d tokens, %d %s", name, split["lines"], split["blank_lines"], split["tokens"],
                 split["unknown_tokens"], unknown_token)
    if stats["splits"]["train"]["unknown_tokens"] == 0:
        log.warning("the train file holds no %r: if the corpus marks unknown words differently, set corpus.unknown_token",
                    unknown_token)
    for key in ("sentences", "tokens"):
        stats[key] = sum(split[key] for split in stats["splits"].values())
    if split_stats_path is not None:
        write_json(split_stats_path, {
            "split_unit": "given", "sentences_kept": stats["sentences"], "dropped_too_short": 0, "dropped_too_long": 0,
            "splits": {name: {"units": 1, "documents": 1, "sentences": split["sentences"], "tokens": split["tokens"]}
                       for name, split in stats["splits"].items()}})
    write_json(stats_path, stats)
    return stats
