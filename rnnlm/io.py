"""Atomic artifact writes and safe loads shared by every stage.

A stage that fails half-way must leave nothing behind that Snakemake (or a user) could mistake for
a finished artifact, so every write goes to a temporary file in the target's directory and is
renamed into place only once complete.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import math
import os
import re
import struct
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np


class RnnlmError(ValueError):
    """A problem with the user's input or configuration; the message says what and how to fix it."""


def log_to(path: str | os.PathLike) -> None:
    """Send logging and stderr (warnings, tracebacks) of a Snakemake job to its log file.

    Warnings and a failing RnnlmError also reach the terminal, where the user runs Snakemake: a
    degenerate corpus or a bad setting must not hide in a log that nobody opens after a success.
    An RnnlmError ends the job as one line (its message) in the log and on the terminal, with no
    traceback; any other exception keeps its traceback in the log. The `rnnlm.progress` lines (one
    per training epoch) go to both as well."""
    sys.stderr = open(path, "w", encoding="utf-8", buffering=1)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", force=True)
    terminal = logging.StreamHandler(sys.__stderr__)
    terminal.setLevel(logging.WARNING)
    terminal.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(terminal)
    progress = logging.StreamHandler(sys.__stderr__)
    progress.setFormatter(logging.Formatter("%(message)s"))
    progress.addFilter(lambda record: record.levelno < logging.WARNING)  # warnings come through `terminal`
    progress_logger = logging.getLogger("rnnlm.progress")
    progress_logger.handlers.clear()  # a second call replaces, not doubles, the terminal lines
    progress_logger.addHandler(progress)
    sys.excepthook = _report_rnnlm_errors


def _report_rnnlm_errors(kind, error, traceback) -> None:
    if issubclass(kind, RnnlmError):
        logging.getLogger("rnnlm").error("%s", error)
    else:
        sys.__excepthook__(kind, error, traceback)


def _visible(match: "re.Match[str]") -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


# Control characters (C0 but tab and newline, DEL, C1) and the bidirectional-text controls: text from
# a corpus or a params file could otherwise move a terminal's cursor, retitle its window or reorder
# what a reader sees.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """`text` with every control character written as a visible escape (ESC as \\x1b); tabs and
    newlines kept, so line- and tab-separated formats keep their shape."""
    return _UNPRINTABLE.sub(_visible, text)


# Why a write failed, and what the user does about it, by errno.
WRITE_FAILURE_FIXES = {
    errno.ENOSPC: "the disk is full: free space on it, or run where there is room",
    errno.EDQUOT: "the disk quota is exhausted: free space, or run where there is room",
    errno.EROFS: "the file system is read-only: run from a writable directory",
    errno.EACCES: "permission denied: make the directory writable for this user, or run elsewhere",
    errno.EPERM: "permission denied: make the directory writable for this user, or run elsewhere",
}


def write_failure(path: str | os.PathLike, error: OSError) -> RnnlmError:
    """A one-line error for a failed write of `path`: the path, the system's reason and the fix."""
    fix = WRITE_FAILURE_FIXES.get(error.errno, f"check that {Path(path).parent} is a writable directory")
    return RnnlmError(f"cannot write {path}: {error.strerror or error}; {fix}")


def remove_stale_temporaries(target: Path, suffix: str = "") -> None:
    """Delete what an earlier writer of `target` killed with SIGKILL left behind (its `finally` never
    ran): temporaries are named `.<name>.<8 random characters><suffix>.tmp` by `atomic_path`. Only
    one writer of an artifact runs at a time (the run lock, one job per output), so any such file is stale."""
    pattern = re.compile(rf"\.{re.escape(target.name)}\.[A-Za-z0-9_]{{8}}{re.escape(suffix)}\.tmp")
    try:
        names = os.listdir(target.parent)
    except OSError:
        return
    for name in names:
        if pattern.fullmatch(name):
            with contextlib.suppress(OSError):
                (target.parent / name).unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    `suffix` keeps an extension some writers insist on (np.savez appends ".npz" otherwise). A failed
    write (disk full, read-only or forbidden directory) becomes an RnnlmError naming `path`.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target, suffix)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix + ".tmp", dir=target.parent)
        os.close(fd)
    except OSError as exc:
        raise write_failure(target, exc) from None
    tmp = Path(tmp_name)
    # mkstemp creates 0600 files; give artifacts the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, target)
    except OSError as exc:
        # Writes through an open handle carry no file name; a failure naming another file (an input
        # read inside the block) is not a write failure of this artifact, nor is an OSError without
        # an errno (a TimeoutError of work done inside the block).
        if exc.errno is None or exc.filename is not None and str(exc.filename) not in (str(tmp), str(target)):
            raise
        raise write_failure(target, exc) from None
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise RnnlmError(f"{path}: file not found; build it first (run snakemake for this target)") from None
    except json.JSONDecodeError as exc:
        raise RnnlmError(f"{path}: not valid JSON ({exc}); delete it and re-run the stage that makes it") from None


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write an uncompressed .npz atomically; object arrays are refused so loads never need pickle."""
    for name, value in arrays.items():
        if np.asarray(value).dtype == object:
            raise TypeError(f"array {name!r} has dtype object; store it as a numeric or unicode array")
    with atomic_path(path, suffix=".npz") as tmp:
        # Write through an open handle so numpy cannot append a second ".npz" to the name.
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)


# Every .npz is a zip archive; np.load would take anything else for a pickle.
ZIP_MAGIC = b"PK"


def _check_zip_header(path: str | os.PathLike, what: str) -> None:
    try:
        with open(path, "rb") as handle:
            header = handle.read(len(ZIP_MAGIC))
    except FileNotFoundError:
        raise RnnlmError(f"{path}: file not found; build it first (run snakemake for this target)") from None
    except OSError as exc:
        raise RnnlmError(f"{path}: cannot be read ({exc.strerror}); pass {what}") from None
    if header != ZIP_MAGIC:
        raise RnnlmError(f"{path}: not {what} (no zip archive header: text or another format); pass one written by this tool")


def _unreadable(path, exc: Exception) -> RnnlmError:
    return RnnlmError(f"{path}: not a readable .npz archive ({exc}); delete it and re-run the stage that makes it")


def _pickled(path, detail: str) -> RnnlmError:
    return RnnlmError(f"{path}: contains pickled objects, which are never loaded for safety ({detail}); "
                      "re-create the file with this tool")


def _require(path, arrays: dict, required: tuple[str, ...]) -> dict[str, np.ndarray]:
    missing = [name for name in required if name not in arrays]
    if missing:
        raise RnnlmError(f"{path}: missing arrays {missing}; the file is from another tool or version, re-create it")
    return arrays


def available_memory_bytes() -> int:
    """Memory this process could still take: MemAvailable of /proc/meminfo (Linux), else the
    physical memory; the cap on what an untrusted file may make us allocate."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError, AttributeError):
        return 1 << 34


@dataclasses.dataclass(frozen=True)
class NpzMember:
    """What a member's .npy header declares, read without reading (or decompressing) its data."""

    shape: tuple[int, ...]
    dtype: np.dtype
    nbytes: int  # of the array the header declares
    member: str  # its file name inside the archive


def _member_header(member) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(member)
    if version not in NPY_HEADER_READERS:
        raise ValueError(f"unsupported .npy format version {version}")
    return NPY_HEADER_READERS[version](member)


def npz_headers(path: str | os.PathLike, what: str = "an .npz file") -> dict[str, NpzMember]:
    """Shape and dtype of every member of an .npz, from the headers alone (each member's first bytes:
    a compressed member is decompressed no further). Refuses object dtypes and a member whose header
    declares more data than the archive's index says the member holds."""
    _check_zip_header(path, what)
    members = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                with archive.open(info) as member:
                    try:
                        shape, _, dtype = _member_header(member)
                    except ValueError as exc:
                        # numpy's own message for a damaged header speaks of pickles; it is a damaged header.
                        raise _unreadable(path, f"member {info.filename!r} has no valid .npy header: {exc}") from None
                    header_bytes = member.tell()
                if dtype.hasobject:
                    raise _pickled(path, f"array {info.filename!r} has dtype object")
                nbytes = math.prod(shape) * dtype.itemsize
                if header_bytes + nbytes > info.file_size:
                    raise _unreadable(path, f"array {info.filename!r} declares {nbytes} bytes but the member holds "
                                            f"{info.file_size - header_bytes}")
                members[info.filename.removesuffix(".npy")] = NpzMember(tuple(shape), dtype, nbytes, info.filename)
    except RnnlmError:
        raise
    except FileNotFoundError:
        raise RnnlmError(f"{path}: file not found; build it first (run snakemake for this target)") from None
    except Exception as exc:  # zipfile.BadZipFile, zlib.error, EOFError: a truncated or foreign file
        raise _unreadable(path, exc) from None
    return members


def _refuse_oversized(path, members: dict[str, NpzMember], max_bytes: int) -> None:
    total = sum(member.nbytes for member in members.values())
    if total > max_bytes:
        largest = max(members, key=lambda name: members[name].nbytes)
        raise RnnlmError(
            f"{path}: its arrays would take {total / 2**20:,.0f} MiB (largest {largest!r}: {members[largest].shape}), "
            f"more than the {max_bytes / 2**20:,.0f} MiB allowed here; use a file written by this tool for this "
            "machine, or run on one with more memory"
        )


def load_npz(path: str | os.PathLike, required: tuple[str, ...] = (), what: str = "an .npz file",
             names: tuple[str, ...] | None = None, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """Load the arrays of an .npz (all, or those in `names`) without ever unpickling; check that
    `required` keys exist. `what` names the expected file in the message for a file of another kind
    (text, say). The headers are checked first: together the arrays read may not take more than
    `max_bytes` (default: the memory available), so a small file cannot make us allocate gigabytes."""
    headers = npz_headers(path, what)
    _require(path, headers, required)
    chosen = {name: member for name, member in headers.items() if names is None or name in names}
    _refuse_oversized(path, chosen, available_memory_bytes() if max_bytes is None else max_bytes)
    arrays = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for name, header in chosen.items():
                with archive.open(header.member) as member:
                    arrays[name] = np.lib.format.read_array(member, allow_pickle=False)
    except ValueError as exc:
        # numpy raises ValueError for object arrays when allow_pickle=False (checked above already).
        raise _pickled(path, str(exc)) from None
    except Exception as exc:  # zipfile.BadZipFile, OSError, EOFError: a truncated or foreign file
        raise _unreadable(path, exc) from None
    return arrays


# Fixed part of a zip local file header; the name and extra-field lengths are its last two fields.
ZIP_LOCAL_HEADER = struct.Struct("<4s5H3I2H")
NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def map_npz(path: str | os.PathLike, required: tuple[str, ...] = (), what: str = "an .npz file") -> dict[str, np.ndarray]:
    """As `load_npz`, but the non-empty arrays of an uncompressed archive (what `save_npz` writes)
    come back memory-mapped read-only, so a large file costs no memory until its pages are read.
    An archive with compressed members (or a .npy header version numpy writes only for structured
    dtypes) is read whole."""
    _check_zip_header(path, what)
    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as archive, open(path, "rb") as handle:
            members = archive.infolist()
            if any(info.compress_type != zipfile.ZIP_STORED for info in members):
                return load_npz(path, required, what)
            for info in members:
                handle.seek(info.header_offset)
                fields = ZIP_LOCAL_HEADER.unpack(handle.read(ZIP_LOCAL_HEADER.size))
                handle.seek(info.header_offset + ZIP_LOCAL_HEADER.size + fields[-2] + fields[-1])
                start = handle.tell()
                version = np.lib.format.read_magic(handle)
                if version not in NPY_HEADER_READERS:
                    return load_npz(path, required, what)
                shape, fortran, dtype = NPY_HEADER_READERS[version](handle)
                if dtype.hasobject:
                    raise _pickled(path, f"array {info.filename!r} has dtype object")
                name = info.filename.removesuffix(".npy")
                if math.prod(shape) == 0 or not shape:
                    handle.seek(start)
                    arrays[name] = np.lib.format.read_array(handle, allow_pickle=False)
                    continue
                end = handle.tell() + math.prod(shape) * dtype.itemsize
                if end > start + info.file_size:
                    raise _unreadable(path, f"array {info.filename!r} is truncated")
                arrays[name] = np.memmap(path, dtype=dtype, mode="r", offset=handle.tell(), shape=shape,
                                         order="F" if fortran else "C")
    except RnnlmError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, a bad .npy header, a file shorter than its index says
        raise _unreadable(path, exc) from None
    return _require(path, arrays, required)
