"""Download stage: fetch a corpus, verify it, and turn it into one JSON document per line.

Sources (the `corpus` config key):
  * ``builtin``: the prose of the Python documentation (``pydoc_data.topics``), with code
    blocks, grammar productions, tables and markup removed: real English without network. It is a
    fixed snapshot shipped in the package (rnnlm/builtin_corpus.jsonl.gz, extracted from CPython
    3.11.7, PSF License: rnnlm/builtin_corpus.LICENSE.txt), its sha256 checked on every read, so
    every supported Python gets the same bytes (each interpreter's own topics differ).
  * a named data set (``reddit-2015-08``: the seed tutorial's reddit comments).
  * an ``http(s)://`` URL, or a local path: plain text (documents separated by blank lines) or
    CSV (one document per row, in a configurable column), either optionally gzip-compressed.
"""

from __future__ import annotations

import base64
import codecs
import csv
import errno
import gzip
import hashlib
import http.client
import io
import json
import logging
import math
import os
import platform
import re
import shutil
import stat
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from rnnlm.io import WRITE_FAILURE_FIXES, RnnlmError, atomic_path, available_memory_bytes, read_json, write_failure, write_json

log = logging.getLogger(__name__)

BUILTIN = "builtin"


@dataclass(frozen=True)
class NamedDataset:
    url: str
    checksum: str
    corpus_format: str


NAMED_DATASETS = {
    "reddit-2015-08": NamedDataset(
        url="https://raw.githubusercontent.com/dennybritz/rnn-tutorial-rnnlm/master/data/reddit-comments-2015-08.csv",
        checksum="gitblob:5c116635bce430ed464bcfadc8cc202c26f0b8a5",
        corpus_format="csv",
    ),
}

# HTTP statuses worth retrying: the server may answer differently a moment later.
TRANSIENT_HTTP_STATUSES = {408, 425, 429, 500, 502, 503, 504}
# Defaults of the download_attempts and download_timeout config keys: a server that accepts the
# connection and never answers costs at most 3 x 30 s plus the backoff.
DOWNLOAD_ATTEMPTS = 3
DOWNLOAD_TIMEOUT_SECONDS = 30.0
URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
CHUNK_BYTES = 1 << 20
REPLACEMENT_CHARACTER = "\ufffd"


def is_url(corpus: str) -> bool:
    return corpus.startswith(("http://", "https://"))


def local_corpus_path(corpus: str) -> str | None:
    """The file a `corpus` value names, or None for the built-in corpus, named data sets and URLs.

    Raises RnnlmError for a URL of another scheme (ftp://, ...) and for a local file that does not
    exist, so that Snakemake stops with this message when it reads the config, before any job."""
    if corpus == BUILTIN or corpus in NAMED_DATASETS or is_url(corpus):
        return None
    scheme = URL_SCHEME.match(corpus)
    if scheme:
        raise RnnlmError(
            f"corpus {corpus!r}: {scheme.group(1)}:// is not supported, only http:// and https:// URLs and local files; "
            "download the file yourself and set corpus to its local path"
        )
    problem = _not_a_regular_file(Path(corpus))
    if problem:
        raise RnnlmError(
            f"corpus file {corpus} {problem} (relative paths start at {Path.cwd()}); set corpus to an existing "
            f"regular file, an http(s):// URL, {BUILTIN!r} or one of {sorted(NAMED_DATASETS)}"
        )
    return corpus


def _not_a_regular_file(path: Path) -> str:
    """Why `path` cannot be read as a corpus file ("" when it can): each case named as what it is."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "is a symbolic link to a missing file" if path.is_symlink() else "does not exist"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link loop"
        return f"cannot be examined ({exc.strerror})"
    if stat.S_ISREG(mode):
        return ""
    kinds = {stat.S_ISDIR: "a directory", stat.S_ISFIFO: "a named pipe (FIFO), which can be read only once",
             stat.S_ISCHR: "a character device (/dev/zero, a terminal: endless or interactive)",
             stat.S_ISBLK: "a block device", stat.S_ISSOCK: "a socket"}
    kind = next((name for test, name in kinds.items() if test(mode)), "not a regular file")
    return f"is {kind}, not a regular file"


# --- checksums --------------------------------------------------------------------------------


def content_sha256(path: str | os.PathLike, cache_path: str | os.PathLike) -> str:
    """sha256 of a local corpus file: a params value of the download rule, so Snakemake notices an
    edit that kept the modification time (`cp -p`, `rsync -t`), which its mtime check misses.

    The file is hashed only when its identity (path, size, mtime, ctime, inode) differs from the one
    recorded in `cache_path` with the last digest: an unchanged corpus costs one stat per run. ctime
    cannot be set back by the user, so an edit always changes the identity."""
    status = os.stat(path)
    identity = [str(Path(path).resolve()), status.st_size, status.st_mtime_ns, status.st_ctime_ns, status.st_ino]
    try:
        with open(cache_path, encoding="utf-8") as handle:
            cached = json.load(handle)
        if cached["identity"] == identity:
            return str(cached["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no cache yet, or one from another file
    digest = file_digests(Path(path))["sha256"]
    try:
        write_json(cache_path, {"identity": identity, "sha256": digest})
    except RnnlmError:
        pass  # only a cache: the next run hashes again
    return digest



def file_digests(path: Path) -> dict[str, str]:
    """sha256 and git blob id (sha1 of "blob <size>\\0" + content) of a file, streamed."""
    size = path.stat().st_size
    sha256 = hashlib.sha256()
    gitblob = hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            sha256.update(chunk)
            gitblob.update(chunk)
    return {"sha256": sha256.hexdigest(), "gitblob": gitblob.hexdigest()}


def verify_checksum(what: str, digests: dict[str, str], expected: str) -> None:
    """Compare `expected` ("sha256:<hex>" or "gitblob:<hex>", or "" for no check) with `digests`."""
    if not expected:
        return
    algorithm, _, value = expected.partition(":")
    if algorithm not in digests or not value:
        raise RnnlmError(
            f"checksum {expected!r} is not understood; write it as 'sha256:<64 hex digits>' or "
            "'gitblob:<40 hex digits>', or set checksum to \"\" to skip the check"
        )
    actual = digests[algorithm]
    if actual != value.lower():
        raise RnnlmError(
            f"checksum mismatch for {what}: expected {algorithm}:{value}, got {algorithm}:{actual}. "
            "The file is corrupt or has changed; check the source, or set checksum in config.yaml to the "
            "new value (or \"\" to skip the check) if you trust it"
        )


# --- fetching ---------------------------------------------------------------------------------

# Query parameters and user information of a URL can hold credentials (a signed URL's
# X-Amz-Signature, a token=...); they never reach the manifest, a log line or an error message.
REDACTED = "REDACTED"
# Content types of pages a server sends instead of a file (an error or login page answered with 200).
PAGE_CONTENT_TYPES = ("text/html", "application/xhtml+xml", "application/json", "application/problem+json")
PAGE_START = re.compile(rb"^\s*(<!doctype html|<html|<\?xml[^>]*>\s*<html)", re.IGNORECASE)


def redacted_url(url: str) -> str:
    """`url` without what may be a secret: user:password@ and the value of every query parameter."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    query = "&".join(f"{name}={REDACTED}" if value or "=" in pair else name
                     for pair in parts.query.split("&") if pair
                     for name, _, value in [pair.partition("=")])
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects to http(s) only; urllib would follow one to ftp:// and then fail without
    saying that a redirect happened."""

    def redirect_request(self, request, fp, code, message, headers, new_url):
        target = urllib.parse.urljoin(request.full_url, new_url)
        if urllib.parse.urlsplit(target).scheme not in ("http", "https"):
            raise RnnlmError(
                f"downloading {redacted_url(request.full_url)}: the server redirects (HTTP {code}) to "
                f"{redacted_url(target)}, which is not http(s); download the file yourself and set corpus to its local path"
            )
        return super().redirect_request(request, fp, code, message, headers, new_url)


_OPENER = urllib.request.build_opener(_HttpOnlyRedirects)


def download_limit_bytes() -> int:
    """The largest download accepted: the download stage holds the file, its text and its documents
    in memory at once (about four copies), so a quarter of the memory available."""
    return available_memory_bytes() // 4


def _refuse_page(url: str, response, first_bytes: bytes) -> None:
    content_type = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if content_type in PAGE_CONTENT_TYPES or PAGE_START.match(first_bytes):
        kind = content_type or "an HTML page"
        raise RnnlmError(
            f"downloading {redacted_url(url)}: the server sent a web page ({kind}), not a corpus file (an error or login "
            "page?); check the address in the corpus setting, or download the file yourself and set corpus to its path"
        )


def _receive(url: str, response, sink, limit: int) -> None:
    """Copy the response body into `sink`; an OSError subclass (retried) when it ends early."""
    declared = response.headers.get("Content-Length")
    expected = int(declared) if declared and declared.strip().isdigit() else None
    if (expected or 0) > limit:
        raise RnnlmError(
            f"downloading {redacted_url(url)}: the server announces {expected:,} bytes, more than the {limit:,} this "
            "machine can hold in the download stage; use a smaller corpus or a machine with more memory"
        )
    received, first = 0, True
    while chunk := response.read(CHUNK_BYTES):
        if first:
            _refuse_page(url, response, chunk)
            first = False
        received += len(chunk)
        if received > limit:
            raise RnnlmError(
                f"downloading {redacted_url(url)}: more than {limit:,} bytes, more than this machine can hold in the "
                "download stage; use a smaller corpus or a machine with more memory"
            )
        sink.write(chunk)
    if expected is not None and received != expected:
        # http.client reads a body cut short as a clean end when asked for chunks: count ourselves.
        raise http.client.IncompleteRead(b"", expected - received)


def download(url: str, destination: Path, attempts: int = DOWNLOAD_ATTEMPTS, backoff_seconds: float = 1.0,
             timeout: float = DOWNLOAD_TIMEOUT_SECONDS) -> None:
    """Stream `url` into `destination`, retrying transient failures with exponential backoff.

    `timeout` bounds each wait for the server (connecting, or the next bytes), not the whole
    download. A client error (404, 403, ...) fails at once: asking again will not change the answer.
    A body shorter than its Content-Length (the connection closed early) is a transient failure;
    a web page instead of a file, a redirect to another scheme or a body larger than the machine
    can hold fail at once.
    """
    if not (isinstance(attempts, int) and attempts >= 1 and isinstance(timeout, (int, float))
            and math.isfinite(timeout) and timeout > 0):
        raise RnnlmError(f"download_attempts must be >= 1 and download_timeout a finite number > 0, got {attempts} and "
                         f"{timeout}; fix them in config.yaml")
    shown = redacted_url(url)
    limit = download_limit_bytes()
    headers = {"User-Agent": "rnnlm-workflow"}
    parts = urllib.parse.urlsplit(url)
    if parts.username is not None:  # user:password@host: urllib wants it as a header
        credentials = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
        url = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    request = urllib.request.Request(url, headers=headers)
    for attempt in range(1, attempts + 1):
        try:
            with _OPENER.open(request, timeout=timeout) as response, open(destination, "wb") as sink:
                _receive(url, response, sink, limit)
            return
        except urllib.error.HTTPError as exc:
            if exc.code not in TRANSIENT_HTTP_STATUSES:
                raise RnnlmError(
                    f"downloading {shown} failed: HTTP {exc.code} {exc.reason}; check the address in the "
                    "corpus setting of config.yaml"
                ) from None
            reason = f"HTTP {exc.code} {exc.reason}"
        except http.client.IncompleteRead as exc:
            reason = f"the connection closed {exc.expected:,} bytes short of the announced Content-Length"
        except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as exc:
            reason = str(getattr(exc, "reason", exc)) or type(exc).__name__
        except OSError as exc:
            if exc.errno in WRITE_FAILURE_FIXES:  # the local disk, not the network
                raise write_failure(destination, exc) from None
            reason = str(exc)
        if attempt < attempts:
            delay = backoff_seconds * 2 ** (attempt - 1)
            log.warning("download attempt %d/%d of %s failed (%s); retrying in %.1f s", attempt, attempts, shown, reason, delay)
            time.sleep(delay)
    raise RnnlmError(
        f"could not download {shown} after {attempts} attempts of up to {timeout:g} s each (last error: {reason}); check "
        "the address and your network (download_attempts and download_timeout set the patience), or download the "
        "file yourself and set corpus to its local path"
    )


# --- decoding and parsing ---------------------------------------------------------------------


# Byte-order marks of the Unicode encodings other than UTF-8 (UTF-32 first: its LE mark starts like UTF-16's).
OTHER_BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
              (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
# Text has no NUL characters; UTF-16 or UTF-32 without a byte-order mark, or a binary file, has many.
NUL_SAMPLE_BYTES = 1 << 16


def decode_utf8(raw: bytes, what: str, encoding_errors: str) -> tuple[str, int]:
    """Decode UTF-8 (a leading byte-order mark is dropped); return the text and how many invalid
    byte sequences were replaced by U+FFFD (always 0 with encoding_errors="strict"). A file that
    starts with a UTF-16 or UTF-32 byte-order mark is decoded as that encoding; one with NUL bytes
    and no mark is refused (UTF-16 without a mark, or not text at all)."""
    if encoding_errors not in ("replace", "strict"):
        raise RnnlmError(f"encoding_errors must be 'replace' or 'strict', not {encoding_errors!r}")
    codec, body = "utf-8-sig", raw
    for bom, other in OTHER_BOMS:
        if raw.startswith(bom):
            codec, body = other, raw[len(bom):]
            log.info("%s starts with a %s byte-order mark: decoded as %s", what, other.upper(), other.upper())
            break
    if codec == "utf-8-sig" and b"\x00" in raw[:NUL_SAMPLE_BYTES]:
        raise RnnlmError(
            f"{what} contains NUL bytes (byte {raw.index(bytes(1))}): UTF-16/UTF-32 without a byte-order mark, or not "
            "a text file; convert it to UTF-8 (iconv -f UTF-16 -t UTF-8) or check that corpus names the right file"
        )
    try:
        text = body.decode(codec, errors=encoding_errors)
    except UnicodeDecodeError as exc:
        raise RnnlmError(
            f"{what} is not valid {codec.removesuffix('-sig').upper()} (byte {exc.start}: {exc.reason}); convert it to "
            "UTF-8, or set encoding_errors: replace in config.yaml to replace bad bytes with U+FFFD (counted in the manifest)"
        ) from None
    # U+FFFD characters already present in the input are genuine text, not replacements.
    genuine = body.decode(codec, errors="ignore").count(REPLACEMENT_CHARACTER) if encoding_errors == "replace" else 0
    replaced = text.count(REPLACEMENT_CHARACTER) - genuine
    return text, replaced


# The longest document the download stage writes (characters). Sentence splitting and tokenizing
# hold one document at once and NLTK gives each regular-expression call a few seconds of wall clock,
# so a corpus with no blank lines (one sentence a line, a very common layout) must not become one
# document of megabytes: a longer document is cut at line boundaries into pieces of at most this
# size, and a single longer line at the last whitespace before the limit (docs/data.md).
MAX_DOCUMENT_CHARACTERS = 1 << 18


def cut_document(document: str, limit: int = MAX_DOCUMENT_CHARACTERS) -> list[str]:
    """`document` as pieces of at most `limit` characters, cut after a line break where one falls
    inside the window, else after the last space or tab, else at the limit. The pieces keep every
    character but the whitespace at the cuts and the ends, in order."""
    pieces, start = [], 0
    while len(document) - start > limit:
        window = document[start : start + limit + 1]
        cut = window.rfind("\n")
        if cut <= 0:
            cut = max(window.rfind(" "), window.rfind("\t"))
        if cut <= 0:
            pieces.append(document[start : start + limit])
            start += limit
            continue
        pieces.append(document[start : start + cut].strip())
        start += cut + 1
    pieces.append(document[start:].strip())
    return [piece for piece in pieces if piece]


def cut_long_documents(documents: list[str], limit: int = MAX_DOCUMENT_CHARACTERS) -> tuple[list[str], int]:
    """Every document of at most `limit` characters (see MAX_DOCUMENT_CHARACTERS); and how many were cut."""
    if all(len(document) <= limit for document in documents):
        return documents, 0
    kept, cut = [], 0
    for document in documents:
        if len(document) > limit:
            kept.extend(cut_document(document, limit))
            cut += 1
        else:
            kept.append(document)
    return kept, cut


def text_documents(text: str) -> list[str]:
    """Plain text: documents are separated by blank lines."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return [document.strip() for document in re.split(r"\n[ \t]*\n", text) if document.strip()]


def csv_documents(text: str, what: str, text_column: str) -> list[str]:
    """CSV with a header row: one document per row, taken from `text_column`.

    Parsed strictly: a quote left open (which would swallow the following rows into one field) or a
    row with another number of fields than the header stops the stage, naming the line where that
    row starts. Blank lines are skipped."""
    csv.field_size_limit(2**31 - 1)  # reddit comments and similar can exceed the 128 KiB default
    reader = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return []
    except csv.Error as exc:
        raise RnnlmError(f"{what}: not readable as CSV ({exc}); set corpus_format: text if it is plain text") from None
    names = [name.strip() for name in header]
    if text_column not in names:
        raise RnnlmError(
            f"{what} has no column {text_column!r} (its columns are {names}); set text_column in config.yaml "
            "to the column that holds the text"
        )
    column = names.index(text_column)
    documents = []
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return documents
        except csv.Error as exc:
            raise RnnlmError(
                f"{what}: malformed CSV in the row starting on line {start} ({exc}; read up to line {reader.line_num}): "
                "probably a quote left open; fix the file (a field with quotes, commas or line breaks is written "
                'in double quotes, with inner quotes doubled: "")'
            ) from None
        if not row:
            continue
        if len(row) != len(names):
            raise RnnlmError(
                f"{what}: the row starting on line {start} has {len(row)} fields but the header has {len(names)}; "
                "fix the file (a field with commas must be written in double quotes)"
            )
        if row[column].strip():
            documents.append(row[column].strip())


def detect_format(name: str, corpus_format: str) -> str:
    if corpus_format not in ("auto", "text", "csv"):
        raise RnnlmError(f"corpus_format must be auto, text or csv, not {corpus_format!r}")
    if corpus_format != "auto":
        return corpus_format
    stem = name.lower().split("?")[0].removesuffix(".gz")
    return "csv" if stem.endswith(".csv") else "text"


# gzip of natural text shrinks it 3 to 10 times; far more means a decompression bomb (zeros, or one
# line repeated), refused before it fills the memory.
GZIP_MAX_RATIO = 100
GZIP_RATIO_FLOOR_BYTES = 16 << 20  # below this any ratio is harmless


def read_corpus_bytes(path: Path, what: str) -> bytes:
    """The file's content, gunzipped when it starts with the gzip magic bytes. At most
    `download_limit_bytes()` are held (a larger file or decompressed stream is refused as it is
    read), and a gzip stream may expand at most GZIP_MAX_RATIO times."""
    limit = download_limit_bytes()
    fix = "use a smaller corpus or a machine with more memory"
    try:
        size = path.stat().st_size
        if size > limit:
            raise RnnlmError(f"{what} holds {size:,} bytes, more than the {limit:,} this machine can hold in the "
                             f"download stage; {fix}")
        with open(path, "rb") as handle:
            compressed = handle.read(2) == b"\x1f\x8b"
        if not compressed:
            return path.read_bytes()
    except OSError as exc:
        raise RnnlmError(f"cannot read {what}: {exc.strerror or exc}; make it readable for this user") from None
    cap = min(limit, max(GZIP_RATIO_FLOOR_BYTES, GZIP_MAX_RATIO * size))
    content = bytearray()
    try:
        with gzip.open(path, "rb") as stream:
            while chunk := stream.read(CHUNK_BYTES):
                content += chunk
                if len(content) > cap:
                    raise RnnlmError(
                        f"{what} decompresses to more than {cap:,} bytes ({size:,} compressed): a decompression bomb, or "
                        f"more than this machine can hold in the download stage; gunzip it yourself if you trust it "
                        f"and set corpus to the result"
                    )
    except (OSError, EOFError, zlib.error) as exc:
        raise RnnlmError(f"{what} looks gzip-compressed but cannot be decompressed ({exc}); re-download it") from None
    return bytes(content)


def parse_file(path: Path, what: str, corpus_format: str, text_column: str, encoding_errors: str) -> tuple[list[str], int]:
    """Documents of a downloaded or local file (gzip detected by its magic bytes), and the replaced count."""
    raw = read_corpus_bytes(path, what)
    text, replaced = decode_utf8(raw, what, encoding_errors)
    if corpus_format == "csv":
        return csv_documents(text, what, text_column), replaced
    return text_documents(text), replaced


# --- the built-in corpus ----------------------------------------------------------------------

HEADING_UNDERLINE = re.compile(r"^\s*([*=\-~^#])\1{2,}\s*$")
TABLE_LINE = re.compile(r"^\s*[+|]")
LIST_MARKER = re.compile(r"^(?:[*\-]|\d+\.|\(\d+\)|\[\d+\])\s+")
FOOTNOTE_REFERENCE = re.compile(r"\s*\[\d+\]")
QUOTED_LITERAL = re.compile(r'"([^"\n]*)"')
EMPHASIS = re.compile(r"(?<![\w*])\*{1,2}([^*\n]+?)\*{1,2}(?![\w*])")
WORD = re.compile(r"^[A-Za-z][A-Za-z'’-]*[.,;:!?)]*$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _is_prose(text: str) -> bool:
    """A paragraph of sentences: ends like a sentence and is mostly ordinary words."""
    words = text.split()
    if len(words) < 4 or not re.search(r"[.!?:][\"')\]]*$", text):
        return False
    return sum(bool(WORD.match(word)) for word in words) >= 0.6 * len(words)


def _strip_markup(text: str) -> str:
    text = FOOTNOTE_REFERENCE.sub("", text)
    text = QUOTED_LITERAL.sub(r"\1", text)  # the rendered docs quote literals: "if" -> if
    text = EMPHASIS.sub(r"\1", text)
    return " ".join(text.split())


def prose_paragraphs(topic: str) -> list[str]:
    """Prose paragraphs of one rendered pydoc topic.

    The topics are reStructuredText rendered as plain text: a literal block (code, grammar) is a
    paragraph indented deeper than the paragraph before it, which ends with ":". Headings,
    tables, grammar productions and interactive sessions are dropped as well.
    """
    paragraphs = [block.split("\n") for block in re.split(r"\n\s*\n", topic) if block.strip()]
    kept = []
    previous_indent, previous_text = 0, ""
    literal_indent = None  # indentation of the literal block we are inside, if any
    for lines in paragraphs:
        lines = [line.rstrip() for line in lines]
        indent = min(_indent(line) for line in lines if line.strip())
        if literal_indent is not None and indent >= literal_indent:
            continue
        literal_indent = None
        if previous_text.endswith(":") and indent > previous_indent:
            literal_indent = indent
            continue
        previous_indent, previous_text = indent, lines[-1].strip()
        if any(HEADING_UNDERLINE.match(line) or TABLE_LINE.match(line) for line in lines):
            continue
        # The renderer wraps hyphenated words at the hyphen ("user-\ndefined"); rejoin them.
        text = re.sub(r"(?<=\w-)\n(?=\w)", "", "\n".join(line.strip() for line in lines))
        if "::=" in text or ">>>" in text:
            continue
        text = _strip_markup(LIST_MARKER.sub("", text))
        if _is_prose(text):
            kept.append(text)
    return kept


BUILTIN_SNAPSHOT = Path(__file__).with_name("builtin_corpus.jsonl.gz")
BUILTIN_SNAPSHOT_RECORD = Path(__file__).with_name("builtin_corpus.json")


def extract_builtin_documents() -> list[str]:
    """This interpreter's pydoc_data topics as documents, how the snapshot was made
    (`write_builtin_snapshot`): one document per topic (topics in sorted order), its prose
    paragraphs joined by blank lines, so that a document is a real multi-paragraph text.

    Some topics repeat paragraphs of others; only a paragraph's first occurrence is kept, which stops
    them leaking across data splits (a topic left without paragraphs is no document).
    """
    from pydoc_data.topics import topics

    seen: set[str] = set()
    documents = []
    for name in sorted(topics):
        paragraphs = [paragraph for paragraph in dict.fromkeys(prose_paragraphs(topics[name])) if paragraph not in seen]
        seen.update(paragraphs)
        if paragraphs:
            documents.append("\n\n".join(paragraphs))
    return documents


def _snapshot_bytes(documents: list[str]) -> bytes:
    return "".join(json.dumps(document, ensure_ascii=False) + "\n" for document in documents).encode()


def write_builtin_snapshot(snapshot: Path = BUILTIN_SNAPSHOT, record: Path = BUILTIN_SNAPSHOT_RECORD) -> dict:
    """Replace the shipped snapshot with this interpreter's extraction (a maintainer's step: it
    changes the default corpus and every figure measured on it)."""
    raw = _snapshot_bytes(extract_builtin_documents())
    with atomic_path(snapshot) as tmp:
        Path(tmp).write_bytes(gzip.compress(raw, compresslevel=9, mtime=0))
    info = {"source": f"pydoc_data.topics of CPython {platform.python_version()}, prose of each topic "
                      "(rnnlm.corpus.extract_builtin_documents)",
            "license": "PSF License Version 2 (the Python documentation); see builtin_corpus.LICENSE.txt",
            "documents": raw.count(b"\n"), "bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    write_json(record, info)
    return info


def builtin_documents() -> list[str]:
    """The built-in corpus: the shipped snapshot's documents, its sha256 verified."""
    record = read_json(BUILTIN_SNAPSHOT_RECORD)
    try:
        raw = gzip.decompress(BUILTIN_SNAPSHOT.read_bytes())
    except (OSError, EOFError) as exc:
        raise RnnlmError(f"{BUILTIN_SNAPSHOT}: the built-in corpus is unreadable ({exc}); reinstall the package") from None
    if hashlib.sha256(raw).hexdigest() != record["sha256"]:
        raise RnnlmError(f"{BUILTIN_SNAPSHOT}: the built-in corpus does not match its sha256 {record['sha256']}; "
                         "reinstall the package")
    return [json.loads(line) for line in raw.decode("utf-8").splitlines()]


# --- the stage --------------------------------------------------------------------------------


def write_documents(path: str | Path, documents: list[str]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as handle:
        for document in documents:
            handle.write(json.dumps(document, ensure_ascii=False) + "\n")


def iter_documents(path: str | Path) -> Iterator[str]:
    """Yield the documents written by `write_documents` one at a time (memory: one document)."""
    number = 0
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                document = json.loads(line)
                if not isinstance(document, str):
                    raise ValueError("not a JSON string")
                yield document
    except FileNotFoundError:
        raise RnnlmError(f"{path}: file not found; run the download stage first") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise RnnlmError(f"{path}: line {number} is not a JSON string ({exc}); delete it and re-run the download stage") from None


def _fetch_source(
    corpus: str, corpus_format: str, text_column: str, checksum: str, encoding_errors: str, scratch: Path, **download_options
) -> tuple[list[str], dict]:
    """Documents and manifest entries of a URL, named data set or local file."""
    if corpus in NAMED_DATASETS:
        dataset = NAMED_DATASETS[corpus]
        url, checksum = dataset.url, checksum or dataset.checksum
        corpus_format = dataset.corpus_format if corpus_format == "auto" else corpus_format
    else:
        url = corpus if is_url(corpus) else None
    if url:
        path = scratch / "download"
        log.info("downloading %s", redacted_url(url))
        download(url, path, **download_options)
        what = redacted_url(url)
    else:
        path = Path(local_corpus_path(corpus))
        what = str(path)
    digests = file_digests(path)
    verify_checksum(what, digests, checksum)
    corpus_format = detect_format(url or corpus, corpus_format)
    documents, replaced = parse_file(path, what, corpus_format, text_column, encoding_errors)
    manifest = {
        "url" if url else "path": redacted_url(url) if url else str(path.resolve()),
        "format": corpus_format,
        "bytes": path.stat().st_size,
        "sha256": digests["sha256"],
        "gitblob": digests["gitblob"],
        "checksum_verified": checksum or None,
        "replaced_invalid_sequences": replaced,
    }
    if corpus_format == "csv":
        manifest["text_column"] = text_column
    return documents, manifest


SCRATCH_PREFIX = ".download-"


def remove_stale_scratch(directory: Path) -> None:
    """Delete scratch directories of a download stage killed with SIGKILL (only one runs at a time)."""
    for stale in directory.glob(SCRATCH_PREFIX + "*"):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)


def prepare_corpus(
    corpus: str,
    documents_path: str | Path,
    manifest_path: str | Path,
    corpus_format: str = "auto",
    text_column: str = "body",
    checksum: str = "",
    encoding_errors: str = "replace",
    **download_options,
) -> dict:
    """Run the download stage: write `documents_path` (JSON lines) and `manifest_path`; return the manifest.

    `download_options` go to `download` (attempts, backoff_seconds, timeout).
    """
    shown = redacted_url(corpus) if is_url(corpus) else corpus
    manifest = {"source": shown, "encoding_errors": encoding_errors, "python_version": platform.python_version()}
    if corpus == BUILTIN:
        documents = builtin_documents()
        extracted = "\n\n".join(documents).encode()
        digests = {"sha256": hashlib.sha256(extracted).hexdigest()}
        verify_checksum("the built-in corpus", digests, checksum)
        manifest.update(kind="pydoc_data.topics prose (shipped snapshot)", bytes=len(extracted), sha256=digests["sha256"],
                        checksum_verified=checksum or None, replaced_invalid_sequences=0)
    else:
        # Scratch space beside the output (same disk); removed whether or not the stage succeeds.
        try:
            Path(documents_path).parent.mkdir(parents=True, exist_ok=True)
            remove_stale_scratch(Path(documents_path).parent)
            scratch_directory = tempfile.TemporaryDirectory(prefix=SCRATCH_PREFIX, dir=Path(documents_path).parent)
        except OSError as exc:
            raise write_failure(documents_path, exc) from None
        with scratch_directory as scratch:
            documents, details = _fetch_source(corpus, corpus_format, text_column, checksum, encoding_errors,
                                               Path(scratch), **download_options)
        manifest.update(details)
    if not documents:
        raise RnnlmError(
            f"corpus {shown!r} contains no text (no non-empty documents); check that the file is not empty and, "
            "for CSV, that text_column names the column with the text"
        )
    documents, manifest["cut_documents"] = cut_long_documents(documents)
    if manifest["cut_documents"]:
        log.warning("%d documents longer than %d characters were cut at line boundaries (no blank lines between "
                    "documents?)", manifest["cut_documents"], MAX_DOCUMENT_CHARACTERS)
    manifest["documents"] = len(documents)
    manifest["characters"] = sum(len(document) for document in documents)
    if manifest["replaced_invalid_sequences"]:
        log.warning("replaced %d invalid UTF-8 byte sequences with U+FFFD", manifest["replaced_invalid_sequences"])
    write_documents(documents_path, documents)
    write_json(manifest_path, manifest)
    log.info("%d documents, %d characters from %s", manifest["documents"], manifest["characters"], shown)
    return manifest
