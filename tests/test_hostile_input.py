"""Hostile input: files, servers and settings built to make a stage crash, hang, exhaust memory or
inject markup (issue 18). One section per cause; each case states the attack and what must happen
instead: a one-line RnnlmError naming the problem and the fix, or output that is escaped.

Extend it by adding a case next to its cause. Network cases use `serve`, an HTTP server on
127.0.0.1 answering with a scripted handler, shut down after the test; every loop is bounded.
"""

from __future__ import annotations

import json
import re
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from rnnlm import io as rnnlm_io
from rnnlm import model as rnnlm_model
from rnnlm.backend import get_backend
from rnnlm.io import RnnlmError, load_npz, save_npz
from rnnlm.model import RNNLM, ModelConfig

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
