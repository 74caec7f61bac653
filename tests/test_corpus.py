"""Download stage: sources, parsing, decoding, checksums, HTTP with retries, manifest."""

from __future__ import annotations

import csv
import errno
import gzip
import hashlib
import http.server
import io
import json
import socket
import threading
import time
from pathlib import Path

import pytest
import yaml

from rnnlm import corpus
from rnnlm.corpus import iter_documents, prepare_corpus
from rnnlm.io import RnnlmError

CSV_BYTES = b'id,body\n1,"First comment. It has two sentences."\n2,"A second one,\nover two lines."\n3,""\n'


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class CorpusServer:
    """A local HTTP server: serves `files` by path, answers `failures_before_success[path]` times with 503 first."""

    def __init__(self, files: dict[str, bytes], failures_before_success: dict[str, int] | None = None):
        self.files = files
        self.failures = dict(failures_before_success or {})
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                if server.failures.get(self.path, 0) > 0:
                    server.failures[self.path] -= 1
                    self.send_error(503, "try again")
                elif self.path in server.files:
                    body = server.files[self.path]
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self.send_error(404, "no such file")

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


def outputs(tmp_path):
    return tmp_path / "out" / "documents.jsonl", tmp_path / "out" / "manifest.json"


def assert_nothing_written(tmp_path):
    out = tmp_path / "out"
    assert not out.exists() or list(out.iterdir()) == []


# --- built-in corpus -------------------------------------------------------------------------


def test_builtin_corpus_is_prose_without_code_grammar_or_markup(tmp_path):
    documents_path, manifest_path = outputs(tmp_path)
    manifest = prepare_corpus("builtin", documents_path, manifest_path)
    documents = list(iter_documents(documents_path))
    # One document per topic, several paragraphs each (context for models that read documents).
    assert len(documents) > 50
    paragraphs = [paragraph for document in documents for paragraph in document.split("\n\n")]
    assert len(paragraphs) > 500 and len(paragraphs) == len(set(paragraphs))  # a repeated paragraph is kept once
    assert sorted(len(document.split("\n\n")) for document in documents)[len(documents) // 2] >= 3
    assert sum(len(d.split()) for d in documents) > 20_000
    joined = "\n".join(documents)
    for marker in ("::=", ">>>", "****", "====", "+---", "def __init__(self"):
        assert marker not in joined
    assert '"if"' not in joined and "The if statement" in joined
    assert len(set(documents)) == len(documents)
    assert manifest["documents"] == len(documents)
    assert manifest["python_version"].count(".") == 2
    assert manifest["sha256"] == hashlib.sha256("\n\n".join(documents).encode()).hexdigest()
    assert json.loads(manifest_path.read_text()) == manifest


def test_builtin_checksum_is_verified(tmp_path):
    documents_path, manifest_path = outputs(tmp_path)
    with pytest.raises(RnnlmError, match="checksum mismatch"):
        prepare_corpus("builtin", documents_path, manifest_path, checksum="sha256:" + "0" * 64)
    assert_nothing_written(tmp_path)


def test_builtin_corpus_is_the_shipped_snapshot_on_every_python(tmp_path):
    """The same bytes whatever the interpreter: the documents come from the package's snapshot,
    whose documents.jsonl bytes match the recorded sha256 (and license) exactly."""
    from rnnlm import corpus

    record = json.loads(corpus.BUILTIN_SNAPSHOT_RECORD.read_text())
    assert "PSF License" in record["license"] and corpus.BUILTIN_SNAPSHOT.with_name("builtin_corpus.LICENSE.txt").exists()
    documents_path, manifest_path = outputs(tmp_path)
    prepare_corpus("builtin", documents_path, manifest_path)
    raw = documents_path.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == record["sha256"] and raw.count(b"\n") == record["documents"]


def test_a_damaged_builtin_snapshot_is_refused(tmp_path, monkeypatch):
    import gzip

    from rnnlm import corpus

    damaged = tmp_path / "builtin_corpus.jsonl.gz"
    damaged.write_bytes(gzip.compress(gzip.decompress(corpus.BUILTIN_SNAPSHOT.read_bytes()).replace(b"the", b"teh", 1)))
    monkeypatch.setattr(corpus, "BUILTIN_SNAPSHOT", damaged)
    with pytest.raises(RnnlmError, match="does not match its sha256 .*; reinstall the package"):
        corpus.builtin_documents()
    damaged.write_bytes(b"not gzip")
    with pytest.raises(RnnlmError, match="unreadable"):
        corpus.builtin_documents()


def test_the_snapshot_writer_reproduces_the_snapshot_on_its_python(tmp_path):
    """Made from CPython 3.11.7's topics: there the extraction gives the shipped bytes again."""
    import platform

    from rnnlm import corpus

    record = json.loads(corpus.BUILTIN_SNAPSHOT_RECORD.read_text())
    if platform.python_version() not in record["source"]:
        pytest.skip(f"the snapshot was extracted on another Python ({record['source']})")
    info = corpus.write_builtin_snapshot(tmp_path / "s.jsonl.gz", tmp_path / "s.json")
    assert info["sha256"] == record["sha256"]
    assert (tmp_path / "s.jsonl.gz").read_bytes() == corpus.BUILTIN_SNAPSHOT.read_bytes()


def test_prose_paragraphs_drop_literal_blocks_headings_and_tables():
    topic = (
        'The "while" statement\n*********************\n\n'
        "The loop repeats a suite while a condition holds, as shown here:\n\n"
        "   while_stmt ::= \"while\" expression\n\n"
        "   while x:\n       pass\n\n"
        "+-----+-----+\n| a   | b   |\n+-----+-----+\n\n"
        "* A list item that is a full sentence of plain words. [1]\n\n"
        "Another paragraph with *emphasis* and a user-\ndefined word spans lines.\n"
    )
    assert corpus.prose_paragraphs(topic) == [
        "The loop repeats a suite while a condition holds, as shown here:",
        "A list item that is a full sentence of plain words.",
        "Another paragraph with emphasis and a user-defined word spans lines.",
    ]


# --- local files -----------------------------------------------------------------------------


def test_text_file_documents_are_blank_line_separated(tmp_path):
    source = tmp_path / "corpus.txt"
    source.write_bytes(b"First doc line one.\r\nline two.\r\n\r\n\r\nSecond doc.\n  \nThird.\n")
    documents_path, manifest_path = outputs(tmp_path)
    manifest = prepare_corpus(str(source), documents_path, manifest_path)
    assert list(iter_documents(documents_path)) == ["First doc line one.\nline two.", "Second doc.", "Third."]
    assert manifest["format"] == "text" and manifest["bytes"] == source.stat().st_size
    assert manifest["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()


def test_csv_column_and_gzip(tmp_path):
    source = tmp_path / "comments.csv.gz"
    source.write_bytes(gzip.compress(CSV_BYTES))
    documents_path, manifest_path = outputs(tmp_path)
    manifest = prepare_corpus(str(source), documents_path, manifest_path, checksum=sha256(source.read_bytes()))
    assert list(iter_documents(documents_path)) == ["First comment. It has two sentences.", "A second one,\nover two lines."]
    assert manifest["format"] == "csv" and manifest["text_column"] == "body"
    assert manifest["checksum_verified"] == sha256(source.read_bytes())


def test_csv_without_the_column_names_the_columns(tmp_path):
    source = tmp_path / "comments.csv"
    source.write_bytes(CSV_BYTES)
    documents_path, manifest_path = outputs(tmp_path)
    with pytest.raises(RnnlmError, match=r"no column 'text'.*\['id', 'body'\].*text_column"):
        prepare_corpus(str(source), documents_path, manifest_path, text_column="text")
    assert_nothing_written(tmp_path)


def test_corpus_format_overrides_the_file_name(tmp_path):
    source = tmp_path / "comments.dat"
    source.write_bytes(CSV_BYTES)
    documents_path, manifest_path = outputs(tmp_path)
    prepare_corpus(str(source), documents_path, manifest_path, corpus_format="csv")
    assert len(list(iter_documents(documents_path))) == 2


@pytest.mark.parametrize("content", [b"", b"\n \n\t\n", b"body\n"])
def test_empty_corpus_is_refused(tmp_path, content):
    source = tmp_path / ("empty.csv" if content.startswith(b"body") else "empty.txt")
    source.write_bytes(content)
    documents_path, manifest_path = outputs(tmp_path)
    with pytest.raises(RnnlmError, match="contains no text"):
        prepare_corpus(str(source), documents_path, manifest_path)
    assert_nothing_written(tmp_path)


def test_missing_local_file(tmp_path):
    documents_path, manifest_path = outputs(tmp_path)
    with pytest.raises(RnnlmError, match="does not exist"):
        prepare_corpus(str(tmp_path / "nope.txt"), documents_path, manifest_path)


@pytest.mark.parametrize("source, message", [
    ("ftp://example.org/corpus.txt", "ftp:// is not supported, only http:// and https:// URLs and local files"),
    ("s3://bucket/corpus.txt", "s3:// is not supported"),
    ("nope.txt", r"corpus file nope.txt does not exist \(relative paths start at"),
    (".", "corpus file . is a directory"),
])
def test_unsupported_or_missing_sources_are_named_before_any_job(source, message):
    """The Snakefile calls local_corpus_path when it reads the config, so these stop Snakemake at once."""
    with pytest.raises(RnnlmError, match=message):
        corpus.local_corpus_path(source)


def test_local_corpus_path_of_the_other_sources(tmp_path):
    (tmp_path / "c.txt").write_text("Text.")
    assert corpus.local_corpus_path(str(tmp_path / "c.txt")) == str(tmp_path / "c.txt")
    for source in ("builtin", "reddit-2015-08", "https://example.org/c.txt", "http://example.org/c.txt"):
        assert corpus.local_corpus_path(source) is None


def comments_csv(rows: int = 100) -> list[str]:
    """The lines of a CSV shaped like the tutorial's: a header, then one quoted comment a line."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "body"])
    for number in range(rows):
        writer.writerow([number, f"Comment {number}, with a comma."])
    return buffer.getvalue().splitlines(keepends=True)


@pytest.mark.parametrize("encoding_errors", ["replace", "strict"])
def test_a_quote_left_open_fails_naming_the_line_instead_of_merging_rows(tmp_path, encoding_errors):
    lines = comments_csv()
    lines[51] = '51,"Comment 51 never closes its quote.\n'  # line 52 of the file
    source = tmp_path / "comments.csv"
    source.write_text("".join(lines))
    documents_path, manifest_path = outputs(tmp_path)
    with pytest.raises(RnnlmError, match="malformed CSV in the row starting on line 52 .*quote left open"):
        prepare_corpus(str(source), documents_path, manifest_path, encoding_errors=encoding_errors)
    assert_nothing_written(tmp_path)
    # Open to the end of the file: no later quote closes it.
    source.write_text("".join(comments_csv(3)) + '3,"open to the end\n4,more\n')
    with pytest.raises(RnnlmError, match="row starting on line 5 .*read up to line 6"):
        prepare_corpus(str(source), documents_path, manifest_path)
    source.write_text("".join(comments_csv()))
    assert prepare_corpus(str(source), documents_path, manifest_path)["documents"] == 100


def test_a_row_with_another_number_of_fields_fails_naming_the_line(tmp_path):
    source = tmp_path / "comments.csv"
    source.write_text("body\nFine.\n\nUnquoted, comma splits this row.\n")
    documents_path, manifest_path = outputs(tmp_path)
    with pytest.raises(RnnlmError, match="row starting on line 4 has 2 fields but the header has 1"):
        prepare_corpus(str(source), documents_path, manifest_path)
    assert_nothing_written(tmp_path)


def test_unreadable_local_file_is_named(tmp_path, monkeypatch):
    source = tmp_path / "c.txt"
    source.write_text("Text here.")

    def refuse(self):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(RnnlmError, match=f"cannot read {source}: Permission denied"):
        prepare_corpus(str(source), *outputs(tmp_path))


# --- decoding --------------------------------------------------------------------------------


def test_invalid_utf8_is_replaced_and_counted_but_genuine_replacement_characters_are_not():
    raw = "caf\u00e9 \ufffd ok".encode() + b" \xff\xfe bad \xc3"
    text, replaced = corpus.decode_utf8(raw, "x", "replace")
    assert replaced == 3  # \xff, \xfe and the truncated \xc3 each become one U+FFFD
    assert text.startswith("caf\u00e9 \ufffd ok")


def test_invalid_utf8_with_strict_fails_and_says_how_to_fix(tmp_path):
    source = tmp_path / "latin1.txt"
    source.write_bytes("Un caf\u00e9 tr\u00e8s fort.".encode("latin-1"))
    documents_path, manifest_path = outputs(tmp_path)
    with pytest.raises(RnnlmError, match="not valid UTF-8.*encoding_errors: replace"):
        prepare_corpus(str(source), documents_path, manifest_path, encoding_errors="strict")
    assert_nothing_written(tmp_path)
    manifest = prepare_corpus(str(source), documents_path, manifest_path, encoding_errors="replace")
    assert manifest["replaced_invalid_sequences"] == 2
    assert list(iter_documents(documents_path)) == ["Un caf\ufffd tr\ufffds fort."]


def test_byte_order_mark_is_dropped():
    assert corpus.decode_utf8(b"\xef\xbb\xbfHello.", "x", "strict") == ("Hello.", 0)


# --- checksums -------------------------------------------------------------------------------


def test_digests_match_sha256_and_git(tmp_path):
    path = tmp_path / "hello"
    path.write_bytes(b"hello\n")
    digests = corpus.file_digests(path)
    assert digests["gitblob"] == "ce013625030ba8dba906f756967f9e9ca394464a"  # `git hash-object` of "hello\n"
    assert digests["sha256"] == hashlib.sha256(b"hello\n").hexdigest()
    corpus.verify_checksum("hello", digests, "gitblob:ce013625030ba8dba906f756967f9e9ca394464a")
    corpus.verify_checksum("hello", digests, "")
    with pytest.raises(RnnlmError, match="expected gitblob:0+, got gitblob:ce0136"):
        corpus.verify_checksum("hello", digests, "gitblob:" + "0" * 40)
    with pytest.raises(RnnlmError, match="not understood"):
        corpus.verify_checksum("hello", digests, "md5:abc")


# --- HTTP ------------------------------------------------------------------------------------


def test_http_download_with_checksum(tmp_path):
    documents_path, manifest_path = outputs(tmp_path)
    with CorpusServer({"/data/comments.csv": CSV_BYTES}) as server:
        manifest = prepare_corpus(server.url("/data/comments.csv"), documents_path, manifest_path, checksum=sha256(CSV_BYTES))
    assert len(list(iter_documents(documents_path))) == 2
    assert manifest["url"] == server.url("/data/comments.csv")
    assert manifest["bytes"] == len(CSV_BYTES) and manifest["format"] == "csv"
    assert sorted(p.name for p in documents_path.parent.iterdir()) == ["documents.jsonl", "manifest.json"]


def test_http_checksum_mismatch_leaves_nothing(tmp_path):
    documents_path, manifest_path = outputs(tmp_path)
    with CorpusServer({"/c.txt": b"Some text here."}) as server:
        with pytest.raises(RnnlmError, match="checksum mismatch.*set checksum"):
            prepare_corpus(server.url("/c.txt"), documents_path, manifest_path, checksum="sha256:" + "1" * 64)
    assert_nothing_written(tmp_path)


def test_http_404_fails_without_retrying(tmp_path):
    documents_path, manifest_path = outputs(tmp_path)
    with CorpusServer({}) as server:
        with pytest.raises(RnnlmError, match="HTTP 404.*check the address"):
            prepare_corpus(server.url("/missing.txt"), documents_path, manifest_path, backoff_seconds=0.01)
    assert server.requests == ["/missing.txt"]
    assert_nothing_written(tmp_path)


def test_http_transient_errors_are_retried(tmp_path):
    documents_path, manifest_path = outputs(tmp_path)
    with CorpusServer({"/c.txt": b"Retried text."}, failures_before_success={"/c.txt": 2}) as server:
        prepare_corpus(server.url("/c.txt"), documents_path, manifest_path, attempts=3, backoff_seconds=0.01)
    assert server.requests == ["/c.txt"] * 3
    assert list(iter_documents(documents_path)) == ["Retried text."]


def test_unreachable_url_fails_after_retries(tmp_path):
    with socket.socket() as probe:  # a port nothing listens on once the probe closes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    documents_path, manifest_path = outputs(tmp_path)
    with pytest.raises(RnnlmError, match="could not download .* after 2 attempts.*local path"):
        prepare_corpus(f"http://127.0.0.1:{port}/c.txt", documents_path, manifest_path, attempts=2, backoff_seconds=0.01)
    assert_nothing_written(tmp_path)


def test_a_server_that_never_answers_costs_attempts_times_timeout(tmp_path):
    """It accepts the connection and then says nothing: each attempt ends after `timeout` seconds."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        documents_path, manifest_path = outputs(tmp_path)
        started = time.monotonic()
        with pytest.raises(RnnlmError, match=r"after 2 attempts of up to 0.3 s each.*download_timeout"):
            prepare_corpus(f"http://127.0.0.1:{silent.getsockname()[1]}/c.txt", documents_path, manifest_path,
                           attempts=2, timeout=0.3, backoff_seconds=0.01)
        assert time.monotonic() - started < 5
    assert_nothing_written(tmp_path)


def test_download_defaults_are_the_config_schemas():
    root = Path(__file__).resolve().parents[1]
    schema = yaml.safe_load((root / "workflow/schemas/config.schema.yaml").read_text())["properties"]
    config = yaml.safe_load((root / "config.yaml").read_text())
    assert schema["download_attempts"]["default"] == config["download_attempts"] == corpus.DOWNLOAD_ATTEMPTS
    assert schema["download_timeout"]["default"] == config["download_timeout"] == corpus.DOWNLOAD_TIMEOUT_SECONDS
    with pytest.raises(RnnlmError, match="download_attempts must be >= 1"):
        corpus.download("http://127.0.0.1:9/c.txt", Path("unused"), attempts=0)


def test_named_dataset_uses_its_url_format_and_checksum(tmp_path, monkeypatch):
    blob = b"body\nA named data set comment.\n"
    gitblob = hashlib.sha1(b"blob %d\0" % len(blob) + blob).hexdigest()
    documents_path, manifest_path = outputs(tmp_path)
    with CorpusServer({"/reddit": blob}) as server:
        monkeypatch.setitem(corpus.NAMED_DATASETS, "reddit-2015-08",
                            corpus.NamedDataset(server.url("/reddit"), f"gitblob:{gitblob}", "csv"))
        manifest = prepare_corpus("reddit-2015-08", documents_path, manifest_path)
    assert manifest["checksum_verified"] == f"gitblob:{gitblob}" and manifest["format"] == "csv"
    assert list(iter_documents(documents_path)) == ["A named data set comment."]


def test_the_seed_dataset_is_pinned():
    dataset = corpus.NAMED_DATASETS["reddit-2015-08"]
    assert dataset.url.endswith("dennybritz/rnn-tutorial-rnnlm/master/data/reddit-comments-2015-08.csv")
    assert dataset.checksum == "gitblob:5c116635bce430ed464bcfadc8cc202c26f0b8a5"
