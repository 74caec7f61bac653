"""Faults of the machine rather than the input: a full disk, a read-only or forbidden results
directory. Each ends in one line naming the path and the cause, and leaves no partial file."""

from __future__ import annotations

import errno
import os
import tempfile

import numpy as np
import pytest

from rnnlm import io as rnnlm_io
from rnnlm.cli import main
from rnnlm.io import RnnlmError, atomic_path, save_npz, write_json
from tiny_language import write_tiny_data


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_during_a_write_names_the_file_and_the_fix(tmp_path, monkeypatch):
    target = tmp_path / "stats.json"
    monkeypatch.setattr(rnnlm_io.Path, "write_text", no_space)
    with pytest.raises(RnnlmError, match=f"cannot write {target}: No space left on device; the disk is full"):
        write_json(target, {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_disk_full_inside_an_npz_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(np, "savez", no_space)
    with pytest.raises(RnnlmError, match="cannot write .*train.npz: No space left on device"):
        save_npz(tmp_path / "train.npz", x=np.zeros(3))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("code, fix", [(errno.EROFS, "read-only"), (errno.EACCES, "permission denied"),
                                       (errno.EDQUOT, "quota")])
def test_a_directory_that_cannot_take_files(tmp_path, monkeypatch, code, fix):
    def refuse(*args, dir=None, **kwargs):
        raise OSError(code, os.strerror(code), dir)

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(RnnlmError, match=f"cannot write {tmp_path / 'x.txt'}: {os.strerror(code)}; .*{fix}"):
        rnnlm_io.write_text(tmp_path / "x.txt", "text")


def test_a_failure_reading_another_file_inside_the_block_is_not_reported_as_a_write(tmp_path):
    with pytest.raises(FileNotFoundError):
        with atomic_path(tmp_path / "out.txt"):
            open(tmp_path / "missing-input.txt").close()
    assert list(tmp_path.iterdir()) == []


def test_a_results_path_under_a_file_is_named(tmp_path):
    (tmp_path / "results").write_text("a file where a directory should be")
    with pytest.raises(RnnlmError, match="cannot write .*results/vocab/stats.json: Not a directory"):
        write_json(tmp_path / "results" / "vocab" / "stats.json", {})


def test_cli_write_failure_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    data, vocab = write_tiny_data(tmp_path)
    monkeypatch.setattr(np, "savez", no_space)
    status = main(["-q", "train", "--data-dir", str(data), "--vocab", str(vocab), "--out-dir", str(tmp_path / "m"),
                   "--device", "cpu", "--epochs", "1", "--hidden-size", "4", "--no-progress"])
    assert status == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error
    assert error.startswith("rnnlm train: error: cannot write ") and "No space left on device" in error
    assert not any(path.name.endswith(".tmp") for path in (tmp_path / "m").iterdir())
