"""Hostile input: files, servers and settings built to make a stage crash, hang, exhaust memory or
inject markup (issue 18). One section per cause; each case states the attack and what must happen
instead: a one-line RnnlmError naming the problem and the fix, or output that is escaped.

Extend it by adding a case next to its cause. Network cases use `serve`, an HTTP server on
127.0.0.1 answering with a scripted handler, shut down after the test; every loop is bounded.
"""

from __future__ import annotations

import codecs
import contextlib
import gzip
import hashlib
import http.server
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from nltk.tokenize.punkt import PunktSentenceTokenizer, PunktTrainer
from snakemake.cli import parse_config
from snakemake.exceptions import WorkflowError
from snakemake.utils import update_config, validate

from rnnlm import corpus, generate, report, resources, runlock
from rnnlm import io as rnnlm_io
from rnnlm import workflow_config
from rnnlm import model as rnnlm_model
from rnnlm.backend import get_backend
from rnnlm.cli import main as cli_main
from rnnlm.corpus import iter_documents, prepare_corpus
from rnnlm.data import Split
from rnnlm.generate import GenerateConfig
from rnnlm.io import RnnlmError, load_npz, printable, save_npz
from rnnlm.model import RNNLM, ModelConfig
from rnnlm.ngram import KneserNey
from rnnlm.tokenize import tokenize_corpus, train_sentence_splitter
from rnnlm.train_config import TrainConfig
from rnnlm.vocab import Vocabulary, build_vocabulary
from workflow_runs import job_counts, make_workdir
from workflow_runs import run_snakemake as run_workflow

ROOT = Path(__file__).resolve().parents[1]
CPU = get_backend("cpu")
VOCAB = ["SENTENCE_START", "SENTENCE_END", "UNKNOWN_TOKEN", "a", "b", "c"]


def saved_model(tmp_path, **config) -> tuple[object, dict]:
    path = tmp_path / "params.npz"
    RNNLM(ModelConfig(vocab_size=len(VOCAB), hidden_size=4, **config), CPU, seed=1).save(path, VOCAB, {"epoch": 1})
    return path, load_npz(path)


def peak_allocation(function) -> int:
    """Bytes allocated at the peak while `function` runs (NumPy reports its buffers to tracemalloc)."""
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --- 3: an untrusted params.npz must not make us allocate what it declares -------------------------


def test_an_extra_deflated_member_of_a_params_file_is_never_decompressed(tmp_path):
    path, _ = saved_model(tmp_path)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("bomb.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array(member, np.zeros(32 << 20, dtype=np.uint8))  # 32 MiB in ~32 KB
    assert path.stat().st_size < 1 << 20
    assert peak_allocation(lambda: RNNLM.load(path, CPU)) < 8 << 20


def test_npz_members_are_capped_from_their_headers_before_reading(tmp_path):
    path = tmp_path / "big.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("x.npy", "w") as member:
            np.lib.format.write_array(member, np.zeros(8 << 20, dtype=np.uint8))
    with pytest.raises(RnnlmError, match="would take 8 MiB .* more than the 1 MiB allowed"):
        load_npz(path, max_bytes=1 << 20)


def test_a_params_file_declaring_a_large_model_is_refused_before_the_model_is_built(tmp_path):
    path, arrays = saved_model(tmp_path)
    config = json.loads(str(arrays["config_json"]))
    save_npz(path, **{**arrays, "config_json": np.array(json.dumps({**config, "hidden_size": 3000}))})
    failure = []

    def load():
        with pytest.raises(RnnlmError, match=r"parameter \w+ is float32 \(\d+, \d+\), the config needs float") as info:
            RNNLM.load(path, CPU)
        failure.append(str(info.value))

    assert peak_allocation(load) < 4 << 20 and failure  # building it would take 2 x 36 MB


def test_a_params_file_whose_model_exceeds_the_memory_available_is_refused(tmp_path, monkeypatch):
    path, _ = saved_model(tmp_path)
    monkeypatch.setattr(rnnlm_model, "available_memory_bytes", lambda: 100)
    with pytest.raises(RnnlmError, match="needs 0 MiB, more than the 0 MiB available; run on a machine with more"):
        RNNLM.load(path, CPU)


def test_a_member_declaring_more_data_than_it_holds_is_refused_from_its_header(tmp_path):
    path = tmp_path / "lying.npz"
    with zipfile.ZipFile(path, "w") as archive:
        with archive.open("x.npy", "w") as member:
            np.lib.format.write_array_header_1_0(member, {"descr": "<f8", "fortran_order": False, "shape": (10**9,)})
            member.write(b"\0" * 64)
    with pytest.raises(RnnlmError, match="declares 8000000000 bytes but the member holds 64"):
        load_npz(path)
    with pytest.raises(RnnlmError, match="declares"):
        rnnlm_io.npz_headers(path)


# --- 5: nothing from the configuration's strings reaches the report's reStructuredText ------------


def test_report_templates_interpolate_only_numbers_of_the_config():
    """docutils renders `.. raw:: html` and `javascript:` links, so a corpus file named
    ``x `click me <javascript:alert(1)>`_ y.txt`` would inject the page: only schema numbers and
    integers may be put into a caption (a string key would need escaping first)."""
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    interpolations = []
    for template in sorted((ROOT / "workflow/report").glob("*.rst")):
        interpolations += re.findall(r"{{\s*snakemake\.config((?:\[\"\w+\"\])+)[^}]*}}", template.read_text())
    assert interpolations
    for keys in interpolations:
        node = schema
        for key in re.findall(r"\"(\w+)\"", keys):
            node = node["properties"][key]
        assert node["type"] in ("integer", "number"), f"snakemake.config{keys} is a {node['type']}: escape it first"


# --- a scripted HTTP server on 127.0.0.1 ---------------------------------------------------------


@contextlib.contextmanager
def serve(respond):
    """Run `respond(handler)` for every GET (handler: a BaseHTTPRequestHandler); yields the base URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            respond(self)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def answer(handler, body: bytes, status: int = 200, content_length: int | None = None, **headers) -> None:
    handler.send_response(status)
    handler.send_header("Content-Length", str(len(body) if content_length is None else content_length))
    for name, value in headers.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.end_headers()
    handler.wfile.write(body)
    handler.close_connection = True


def corpus_outputs(tmp_path) -> tuple[Path, Path]:
    return tmp_path / "corpus" / "documents.jsonl", tmp_path / "corpus" / "manifest.json"


def nothing_written(tmp_path) -> bool:
    return not (tmp_path / "corpus").exists() or sorted(p.name for p in (tmp_path / "corpus").iterdir()) == []


TEXT = b"A short corpus. It has two sentences.\n"


# --- 1: a download must arrive whole ------------------------------------------------------------------


def test_a_body_shorter_than_its_content_length_is_retried_then_refused(tmp_path):
    requests = []

    def truncated(handler):
        requests.append(handler.path)
        answer(handler, TEXT[:10], content_length=100000)

    with serve(truncated) as base:
        with pytest.raises(RnnlmError, match=r"after 2 attempts .*closed 99,990 bytes short of the announced Content-Length"):
            prepare_corpus(base + "/c.txt", *corpus_outputs(tmp_path), attempts=2, backoff_seconds=0.01)
    assert len(requests) == 2 and nothing_written(tmp_path)


def test_a_drip_that_stops_early_is_retried_and_a_later_whole_answer_accepted(tmp_path):
    requests = []

    def drip_then_whole(handler):
        requests.append(handler.path)
        if len(requests) == 1:
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(TEXT)))
            handler.end_headers()
            for byte in TEXT[:5]:
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
            handler.close_connection = True
        else:
            answer(handler, TEXT)

    with serve(drip_then_whole) as base:
        manifest = prepare_corpus(base + "/c.txt", *corpus_outputs(tmp_path), attempts=2, backoff_seconds=0.01)
    assert manifest["bytes"] == len(TEXT) and len(requests) == 2


def test_a_content_length_beyond_what_the_machine_holds_is_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "available_memory_bytes", lambda: 4000)
    with serve(lambda handler: answer(handler, TEXT, content_length=10**12)) as base:
        with pytest.raises(RnnlmError, match="announces 1,000,000,000,000 bytes, more than the 1,000"):
            prepare_corpus(base + "/c.txt", *corpus_outputs(tmp_path), attempts=1)
    assert nothing_written(tmp_path)


# --- 13: decompression is bounded ------------------------------------------------------------------


def test_a_gzip_bomb_is_refused_while_it_is_decompressed(tmp_path):
    bomb = tmp_path / "bomb.txt.gz"
    bomb.write_bytes(gzip.compress(b"\n" * (corpus.GZIP_RATIO_FLOOR_BYTES + (1 << 20)), compresslevel=9))
    assert bomb.stat().st_size < 100_000
    with pytest.raises(RnnlmError, match="decompresses to more than 16,777,216 bytes .*a decompression bomb.*gunzip it"):
        prepare_corpus(str(bomb), *corpus_outputs(tmp_path))
    assert nothing_written(tmp_path)


def test_a_gzip_stream_larger_than_the_memory_budget_is_refused(tmp_path, monkeypatch):
    source = tmp_path / "c.txt.gz"
    source.write_bytes(gzip.compress(TEXT * 100))
    monkeypatch.setattr(corpus, "available_memory_bytes", lambda: 4 * len(TEXT) * 10)
    with pytest.raises(RnnlmError, match="decompresses to more than 380 bytes"):
        prepare_corpus(str(source), *corpus_outputs(tmp_path))


# --- 14: a web page served with 200 is not a corpus -------------------------------------------------


@pytest.mark.parametrize("body, content_type", [
    (b"<!DOCTYPE html><html><body>Sign in</body></html>", "text/html; charset=utf-8"),
    (b"<html><body>Not found</body></html>", "text/plain"),
    (b'{"error": "expired"}', "application/json"),
])
def test_an_error_or_login_page_is_refused(tmp_path, body, content_type):
    with serve(lambda handler: answer(handler, body, Content_Type=content_type)) as base:
        with pytest.raises(RnnlmError, match=r"the server sent a web page \(.*\), not a corpus file"):
            prepare_corpus(base + "/c.txt", *corpus_outputs(tmp_path), attempts=1)
    assert nothing_written(tmp_path)


# --- 18: redirects stay on http(s) ------------------------------------------------------------------


def test_a_redirect_to_ftp_is_named_not_followed(tmp_path):
    with serve(lambda handler: answer(handler, b"", status=302, Location="ftp://127.0.0.1/c.txt")) as base:
        with pytest.raises(RnnlmError, match=r"redirects \(HTTP 302\) to ftp://127.0.0.1/c.txt, which is not http\(s\)"):
            prepare_corpus(base + "/c.txt", *corpus_outputs(tmp_path), attempts=1)


def test_a_redirect_to_http_is_still_followed(tmp_path):
    def respond(handler):
        if handler.path == "/old.txt":
            answer(handler, b"", status=301, Location="/new.txt")
        else:
            answer(handler, TEXT)

    with serve(respond) as base:
        assert prepare_corpus(base + "/old.txt", *corpus_outputs(tmp_path))["documents"] == 1


# --- 19: secrets of a signed URL are never stored or logged ----------------------------------------


def test_query_values_and_passwords_of_a_url_are_redacted_everywhere(tmp_path, caplog):
    secret = "s3cr3tSIGNATURE"
    with serve(lambda handler: answer(handler, TEXT)) as base:
        url = base.replace("http://", f"http://user:{secret}@") + f"/c.txt?X-Amz-Signature={secret}&token={secret}&flag"
        with caplog.at_level(logging.INFO):
            manifest = prepare_corpus(url, *corpus_outputs(tmp_path))
        assert manifest["url"] == base + "/c.txt?X-Amz-Signature=REDACTED&token=REDACTED&flag"
        with pytest.raises(RnnlmError) as failure:  # error messages too
            prepare_corpus(url, *corpus_outputs(tmp_path / "again"), checksum="sha256:" + "0" * 64)
    assert secret not in corpus_outputs(tmp_path)[1].read_text() + caplog.text + str(failure.value)


# --- 2: no document the tokenizer must hold at once is megabytes long --------------------------------


def one_sentence_a_line(characters: int) -> str:
    lines = [f"Sentence number {i} has a few words in it." for i in range(characters // 40 + 1)]
    return "\n".join(lines)


def test_a_corpus_without_blank_lines_is_cut_into_documents_at_line_boundaries(tmp_path):
    text = one_sentence_a_line(3 * corpus.MAX_DOCUMENT_CHARACTERS)
    source = tmp_path / "lines.txt"
    source.write_text(text)
    manifest = prepare_corpus(str(source), *corpus_outputs(tmp_path))
    documents = list(iter_documents(corpus_outputs(tmp_path)[0]))
    assert manifest["cut_documents"] == 1 and len(documents) == manifest["documents"] >= 3
    assert max(map(len, documents)) <= corpus.MAX_DOCUMENT_CHARACTERS
    assert "\n".join(documents) == text  # cut between lines, nothing lost


def test_a_single_long_line_is_cut_at_whitespace_and_at_the_limit_without_any():
    line = " ".join(["word"] * 100)
    pieces = corpus.cut_document(line, limit=42)
    assert max(map(len, pieces)) <= 42 and " ".join(pieces) == line
    assert corpus.cut_document("x" * 100, limit=42) == ["x" * 42, "x" * 42, "x" * 16]


def test_punkt_training_reads_at_most_its_cap_even_of_one_long_first_document(monkeypatch):
    trained = []
    monkeypatch.setattr(PunktTrainer, "train", lambda self, text, **kwargs: trained.append(len(text)))
    train_sentence_splitter(iter([one_sentence_a_line(50_000)]), max_characters=10_000)
    assert trained == [10_000]


def test_a_regex_time_limit_while_tokenizing_is_named_not_reported_as_a_full_disk(tmp_path, monkeypatch):
    documents = tmp_path / "documents.jsonl"
    corpus.write_documents(documents, ["One sentence here."])

    def too_slow(self, text):
        raise TimeoutError("regex timed out")

    monkeypatch.setattr(PunktSentenceTokenizer, "tokenize", too_slow)
    with pytest.raises(RnnlmError, match="took too long to split into sentences .*separate its paragraphs"):
        tokenize_corpus(documents, tmp_path / "tokens" / "sentences.txt", tmp_path / "tokens" / "stats.json")
    assert not (tmp_path / "tokens").exists() or list((tmp_path / "tokens").iterdir()) == []


# --- 4: NaN and infinity are refused in every number of the configuration -----------------------------


def prepared(*command_line: str, yaml_text: str = "") -> dict:
    """The configuration as the Snakefile ends up with it (prepare, validate, finish): config.yaml,
    then `yaml_text` appended to it, then `--config` entries."""
    schema_path = ROOT / "workflow/schemas/config.schema.yaml"
    schema = yaml.safe_load(schema_path.read_text())
    config = yaml.safe_load((ROOT / "config.yaml").read_text() + "\n" + yaml_text)
    update_config(config, parse_config(list(command_line)))
    workflow_config.prepare(config, schema)
    validate(config, str(schema_path))
    return workflow_config.finish(config, schema)


@pytest.mark.parametrize("setting, path", [
    ("valid_fraction=nan", "valid_fraction"),
    ("test_fraction=nan", "test_fraction"),
    ("download_timeout=inf", "download_timeout"),
    ("models={rnn: {clip_norm: nan}}", "models.rnn.clip_norm"),
    ("models={rnn: {learning_rate: -inf}}", "models.rnn.learning_rate"),
    ("generate={temperature: nan}", "generate.temperature"),
    ("train_runtime={speed: inf}", "train_runtime.speed"),
])
def test_non_finite_settings_are_refused_when_the_config_is_read(setting, path):
    with pytest.raises(RnnlmError, match=rf"^{re.escape(path)} must be a finite number .*fix config.yaml"):
        prepared(setting)


def test_a_yaml_nan_in_a_config_file_is_refused():
    with pytest.raises(RnnlmError, match="^valid_fraction must be a finite number"):
        prepared(yaml_text="valid_fraction: .nan")


def test_the_library_refuses_non_finite_training_settings_too():
    for name in ("clip_norm", "learning_rate", "lr_decay", "checkpoint_minutes"):
        with pytest.raises(RnnlmError, match=f"training setting {name} must be a finite number, got nan"):
            TrainConfig(**{name: float("nan")})
    with pytest.raises(RnnlmError, match="download_timeout a finite number"):
        corpus.download("http://127.0.0.1:9/c.txt", Path("unused"), timeout=float("inf"))


# --- 8: a YAML alias bomb is refused before anything expands it --------------------------------------

ALIAS_BOMB = "\n".join(["bomb0: &b0 [x, x, x, x, x, x, x, x, x, x]"]
                       + [f"bomb{i}: &b{i} [{', '.join([f'*b{i - 1}'] * 10)}]" for i in range(1, 9)]
                       + ["build_models: *b8"])  # 10**9 strings in ten lines


def test_a_yaml_alias_bomb_is_refused_at_once():
    started = time.monotonic()
    with pytest.raises(RnnlmError, match="more than 100,000 values .*remove the aliases"):
        prepared(yaml_text=ALIAS_BOMB)
    assert time.monotonic() - started < 5


# --- 9: sizes are bounded before work starts ---------------------------------------------------------


def test_a_model_larger_than_the_machine_is_refused_before_scheduling(tmp_path, monkeypatch):
    monkeypatch.setattr(resources, "machine_memory_mb", lambda: 24_000)
    with pytest.raises(RnnlmError, match="model 'big' needs about 935,832 MB of memory, more than this machine's "
                                         "24,000 MB; reduce hidden_size"):
        resources.check_fits_here(935_832, "model 'big'")
    assert resources.check_fits_here(2000, "model 'small'") == 2000


@pytest.mark.parametrize("setting", ["baseline={order: 1000000000}", "generate={num_sentences: 100000000}",
                                     "generate={max_length: 100000000}", "generate={beam_width: 100000000}"])
def test_orders_and_lengths_are_bounded_by_the_schema(setting):
    with pytest.raises(WorkflowError, match="is greater than the maximum of"):
        prepared(setting)


def test_the_library_bounds_them_too(tmp_path):
    with pytest.raises(RnnlmError, match="n-gram order must be between 1 and 10, got 1000000000"):
        KneserNey.fit(None, 10, order=10**9)
    with pytest.raises(RnnlmError, match=r"num_sentences must be an integer 1..100000, got 100000000"):
        GenerateConfig(num_sentences=10**8)


def test_sampling_draws_in_bounded_batches(monkeypatch):
    model = RNNLM(ModelConfig(vocab_size=len(VOCAB), hidden_size=4), CPU, seed=1)
    batches = []
    primed = generate._primed
    monkeypatch.setattr(generate, "_primed", lambda model, batch, start: batches.append(batch) or primed(model, batch, start))
    monkeypatch.setattr(generate, "SAMPLE_BATCH_ROWS", 8)
    assert len(generate.sample_sentences(model, VOCAB, 30, min_length=1, max_length=5)) == 30
    assert max(batches) == 8


@pytest.mark.slow
def test_snakemake_refuses_a_model_larger_than_the_machine_in_a_dry_run(tmp_path, snakemake_env):
    """hidden_size 200000 was scheduled with mem_mb=935832 on a 24 GB machine."""
    workdir = make_workdir(tmp_path / "work", models={"big": {"hidden_size": 200_000, "epochs": 1}})
    output = run_workflow(workdir, "-n", env=snakemake_env, timeout_s=120, expect_success=False)
    assert re.search(r"RnnlmError: model 'big' needs about [\d,]+ MB of memory, more than this machine's", output)


# --- 16: corpus text reaches a terminal only as visible characters -----------------------------------


def test_escape_sequences_of_a_params_vocabulary_are_printed_visibly(tmp_path, capsys):
    hostile = ["SENTENCE_START", "SENTENCE_END", "UNKNOWN_TOKEN", "\x1b]0;owned\x07", "\x1b[2J", "\u202eevil"]
    path = tmp_path / "params.npz"
    RNNLM(ModelConfig(vocab_size=len(hostile), hidden_size=4), CPU, seed=1).save(path, hostile, {})
    assert cli_main(["generate", "--params", str(path), "--num-sentences", "5", "--min-length", "1",
                     "--max-length", "4", "--beam-width", "2"]) in (0, None)
    printed = capsys.readouterr().out
    assert "\x1b" not in printed and "\x07" not in printed and "\u202e" not in printed
    assert "\\x1b" in printed  # shown, not dropped
    assert "\t" in printed and printed.endswith("\n")


def test_printable_keeps_tabs_and_newlines_and_escapes_the_rest():
    assert printable("a\tb\nc\x1b[31md\x9b\u2066") == "a\tb\nc\\x1b[31md\\x9b\\u2066"


# --- 6: a sampled sentence starting with '#' stays a sentence in samples.html ------------------------


def test_sentences_starting_with_a_hash_are_not_headings():
    sampled = [["#", "columns:", "x"], ["#", "hello"], ["plain"]]
    text = generate.format_samples(sampled, [], "settings")
    page = report.samples_html(text)
    assert page.count("<h3>") == 2 and page.count("<li") == 3
    assert "# columns: x" in page and "# hello" in page


# --- 17: a local corpus edited without a new mtime is noticed -----------------------------------------


def edit_keeping_mtime(path: Path) -> None:
    """Change one character, keep the size and the modification time (what `cp -p` of an edit does)."""
    status = path.stat()
    text = path.read_text()
    path.write_text(text.replace("a", "e", 1))
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))
    assert path.stat().st_mtime_ns == status.st_mtime_ns and path.stat().st_size == status.st_size


def test_the_corpus_digest_is_cached_by_file_identity_and_recomputed_after_an_edit(tmp_path, monkeypatch):
    source, cache = tmp_path / "corpus.txt", tmp_path / ".snakemake" / "rnnlm" / "corpus-sha256.json"
    source.write_text("a corpus of a few words\n")
    hashed = []
    digests = corpus.file_digests
    monkeypatch.setattr(corpus, "file_digests", lambda path: hashed.append(path) or digests(path))
    first = corpus.content_sha256(source, cache)
    assert corpus.content_sha256(source, cache) == first and len(hashed) == 1  # unchanged: one stat, no hashing
    edit_keeping_mtime(source)
    assert corpus.content_sha256(source, cache) != first and len(hashed) == 2
    cache.write_text("not json")
    assert corpus.content_sha256(source, cache) == hashlib.sha256(source.read_bytes()).hexdigest()


@pytest.mark.slow
def test_snakemake_reruns_the_download_after_an_edit_that_kept_the_mtime(tmp_path, snakemake_env):
    workdir = make_workdir(tmp_path / "work")
    target = "results/corpus/manifest.json"
    run_workflow(workdir, "--cores", "1", target, env=snakemake_env, timeout_s=120)
    assert "Nothing to be done" in run_workflow(workdir, "-n", target, env=snakemake_env, timeout_s=120)
    edit_keeping_mtime(workdir / "corpus.txt")
    assert job_counts(run_workflow(workdir, "-n", target, env=snakemake_env, timeout_s=120))["download"] == 1


# --- 7: a vocab.tsv cut at a line boundary is refused -------------------------------------------------


def built_vocabulary(tmp_path) -> Path:
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("".join(f"w{i} w{i % 7} w{i % 3}\n" for i in range(40)))
    build_vocabulary(sentences, tmp_path / "vocab" / "vocab.tsv", tmp_path / "vocab" / "stats.json", 30, 1, 80)
    return tmp_path / "vocab" / "vocab.tsv"


def test_a_vocabulary_cut_at_a_line_boundary_is_refused(tmp_path):
    path = built_vocabulary(tmp_path)
    assert len(Vocabulary.load(path)) == 30
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:7]))
    with pytest.raises(RnnlmError, match=r"vocab.tsv holds 6 words that do not match .*stats.json \(size 30.*cut short"):
        Vocabulary.load(path)


# --- 20: each message names the real problem -----------------------------------------------------------


def test_a_count_in_another_script_of_digits_is_a_bad_line_not_a_traceback(tmp_path):
    path = tmp_path / "vocab.tsv"
    path.write_text("id\tword\tcount\n0\tSENTENCE_START\t²\n")
    with pytest.raises(RnnlmError, match="line 2 is not '0<TAB>word<TAB>count'"):
        Vocabulary.load(path)


def test_deeply_nested_metadata_is_refused_not_a_recursion_error(tmp_path):
    path, arrays = saved_model(tmp_path)
    save_npz(path, **{**arrays, "metadata_json": np.array("[" * 100_000 + "]" * 100_000)})
    with pytest.raises(RnnlmError, match="unreadable header arrays .*RecursionError"):
        RNNLM.load(path, CPU)


def test_a_damaged_npy_header_is_called_damaged_not_pickled(tmp_path):
    path = tmp_path / "damaged.npz"
    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }".ljust(118) + b"\n"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.replace(b"<f8", b"<zz"))
    with pytest.raises(RnnlmError, match="member 'x.npy' has no valid .npy header"):
        load_npz(path)


# --- 12: scheduling-time failures are one line, not a Python exception --------------------------------


def test_a_truncated_index_file_fails_the_runtime_estimate_with_one_line(tmp_path):
    path = tmp_path / "train.npz"
    save_npz(path, x=np.zeros(10, dtype=np.int32), y=np.zeros(10, dtype=np.int32), offsets=np.arange(3))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(RnnlmError, match="train.npz: not a readable .npz archive .*delete it and re-run"):
        Split.count_tokens(path)


@pytest.mark.slow
def test_targeting_an_undefined_model_names_the_defined_ones(tmp_path, snakemake_env):
    workdir = make_workdir(tmp_path / "work")
    output = run_workflow(workdir, "-n", "results/models/undefined/params.npz", env=snakemake_env, timeout_s=120,
                          expect_success=False)
    assert "RnnlmError: model 'undefined' is not defined under models: in the config (it defines tiny-tanh, " in output
    assert "KeyError" not in output


# --- 10: UTF-16 and UTF-32 are decoded by their byte-order mark, or refused without one ------------------


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_a_corpus_with_a_utf16_or_utf32_byte_order_mark_is_decoded(tmp_path, encoding):
    text = "Héllo wörld. A second sentence here.\n\nAnother document."
    raw = text.encode(encoding)
    if encoding == "utf-16-be":
        raw = codecs.BOM_UTF16_BE + raw
    source = tmp_path / "c.txt"
    source.write_bytes(raw)
    manifest = prepare_corpus(str(source), *corpus_outputs(tmp_path))
    assert list(iter_documents(corpus_outputs(tmp_path)[0])) == ["Héllo wörld. A second sentence here.", "Another document."]
    assert manifest["replaced_invalid_sequences"] == 0


def test_utf16_without_a_byte_order_mark_is_refused_naming_the_nul_bytes(tmp_path):
    source = tmp_path / "c.txt"
    source.write_bytes("Some text.".encode("utf-16-le"))
    with pytest.raises(RnnlmError, match=r"contains NUL bytes \(byte 1\): UTF-16/UTF-32 without a byte-order mark.*iconv"):
        prepare_corpus(str(source), *corpus_outputs(tmp_path))
    assert nothing_written(tmp_path)


# --- 11: corpus words are drawn literally on plots ---------------------------------------------------


def test_a_frequent_word_that_looks_like_latex_is_drawn_literally(tmp_path):
    words = ["SENTENCE_START", "SENTENCE_END", "UNKNOWN_TOKEN", r"$\undefinedmacro{x}$", "$x^$", "w" * 500]
    vocab = Vocabulary(words, [5, 5, 1, 30, 20, 10])
    report.plot_zipf(vocab, tmp_path / "zipf.png")
    assert (tmp_path / "zipf.png").stat().st_size > 1000
    assert report.plot_label("w" * 500) == "w" * 39 + "…" and report.plot_label("a\x1bb") == "a\\x1bb"


# --- 15: what a writer killed with SIGKILL left behind is removed by the next write ----------------------


def test_a_temporary_left_by_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "report" / "zipf.png"
    killed = subprocess.run([sys.executable, "-c", (
        "import os, signal, sys\n"
        "from rnnlm.io import atomic_path\n"
        "with atomic_path(sys.argv[1], suffix='.png') as tmp:\n"
        "    tmp.write_bytes(b'half a figure')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"), str(target)], env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert killed.returncode == -signal.SIGKILL
    left = [path.name for path in target.parent.iterdir()]
    assert len(left) == 1 and left[0].startswith(".zipf.png.") and left[0].endswith(".png.tmp")
    (target.parent / ".zipf.png.keep.png.tmp").write_text("not ours: another name pattern")
    rnnlm_io.write_text(tmp_path / "report" / "zipf.png.txt", "a neighbour's write removes nothing")
    assert len(list(target.parent.iterdir())) == 3
    with rnnlm_io.atomic_path(target, suffix=".png") as tmp:
        tmp.write_bytes(b"a figure")
    assert sorted(path.name for path in target.parent.iterdir()) == [".zipf.png.keep.png.tmp", "zipf.png", "zipf.png.txt"]


def test_a_download_scratch_directory_left_by_a_killed_stage_is_removed(tmp_path):
    documents, manifest = corpus_outputs(tmp_path)
    stale = documents.parent / ".download-k1ll3d"
    stale.mkdir(parents=True)
    (stale / "download").write_bytes(b"partial")
    source = tmp_path / "c.txt"
    source.write_bytes(TEXT)
    prepare_corpus(str(source), documents, manifest)
    assert sorted(path.name for path in documents.parent.iterdir()) == ["documents.jsonl", "manifest.json"]


@pytest.mark.parametrize("make, problem", [
    (lambda path: path.symlink_to(path), "is a symbolic link loop"),
    (lambda path: path.symlink_to(path.parent / "gone.txt"), "is a symbolic link to a missing file"),
    (lambda path: os.mkfifo(path), r"is a named pipe \(FIFO\)"),
    (None, r"is a character device \(/dev/zero"),
])
def test_a_corpus_path_that_is_not_a_regular_file_is_named_as_what_it_is(tmp_path, make, problem):
    path = Path("/dev/zero") if make is None else tmp_path / "corpus.txt"
    if make is not None:
        make(path)
    with pytest.raises(RnnlmError, match=f"corpus file {path} {problem}"):
        corpus.local_corpus_path(str(path))


def test_the_small_vocabulary_warning_counts_the_corpus_own_unknown_marks(tmp_path, caplog):
    sentences = tmp_path / "train.txt"
    sentences.write_text("a b c d UNKNOWN_TOKEN\nb a d c UNKNOWN_TOKEN\n")
    with caplog.at_level(logging.WARNING):
        build_vocabulary(sentences, tmp_path / "vocab.tsv", tmp_path / "stats.json", 30, 1, 80)
    assert "UNKNOWN_TOKEN occurs only where the corpus itself marks unknown words (2 tokens)" in caplog.text
    assert "never occurs" not in caplog.text


def test_the_watchdog_says_to_unlock_before_resuming(monkeypatch, caplog):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid no live process has (until the kernel reuses it)
    signals = []
    monkeypatch.setattr(runlock, "snakemake_ancestor", lambda: dead.pid)
    monkeypatch.setattr(os, "kill", lambda pid, sig: signals.append(sig))
    with caplog.at_level(logging.ERROR):
        runlock.stop_with_snakemake(poll_seconds=0.01).join(timeout=5)
    assert signals == [signal.SIGTERM]
    assert "run `snakemake --unlock` (the killed run left its lock), then `snakemake --rerun-incomplete`" in caplog.text


@pytest.mark.parametrize("config", [
    {}, {"cell": "lstm", "output": "class", "num_classes": 2}, {"embedding_size": 3},
    {"embedding_size": 4, "tie_embeddings": True, "cell": "gru"}, {"num_layers": 3, "cell": "lstm"},
])
def test_the_shapes_checked_before_building_are_exactly_the_models(tmp_path, config):
    path, _ = saved_model(tmp_path, **config)
    model, _, _ = RNNLM.load(path, CPU)
    expected = RNNLM._expected_shapes(path, model.config, rnnlm_io.npz_headers(path))
    assert expected == {name: tuple(value.shape) for name, value in model.params.items()}
