"""Guards of a training process: one trainer per checkpoint, and no trainer outliving its Snakemake.

A trainer left running after Snakemake was killed (reparented to PID 1) would race a second trainer
started by `snakemake --rerun-incomplete` on the same checkpoint. `exclusive_lock` makes the second
one refuse; `stop_with_snakemake` makes the orphan stop by itself within about a second. Its last
checkpoint is kept, so the next run resumes from it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Iterator

from rnnlm.io import RnnlmError, write_failure

log = logging.getLogger(__name__)

PARENT_POLL_SECONDS = 1.0


@contextlib.contextmanager
def exclusive_lock(checkpoint_path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on `checkpoint_path` (through `<checkpoint>.lock` beside it) while the block runs.

    The kernel releases the lock when the process ends, however it ends (a stale lock file is harmless);
    the holder's pid is written into the file for the message another process gets."""
    lock_path = Path(checkpoint_path).with_name(Path(checkpoint_path).name + ".lock")
    while True:
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(lock_path, "a+", encoding="utf-8")
        except OSError as exc:
            raise write_failure(lock_path, exc) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise RnnlmError(
                f"another training process (pid {holder}) is training into {Path(checkpoint_path).parent} and holds "
                f"{lock_path}; wait for it to finish, or stop it (kill {holder}) and run again to resume from its "
                "last checkpoint"
            ) from None
        # The previous holder may have removed the file between our open and our lock: lock the new one.
        if lock_path.exists() and os.path.samestat(os.fstat(handle.fileno()), os.stat(lock_path)):
            break
        handle.close()
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        lock_path.unlink(missing_ok=True)
        handle.close()


def _process_state(pid: int) -> tuple[str, str] | None:
    """(state letter, start time) of a live process from /proc, or None if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    state, start_time = fields[0], fields[19]
    return None if state in ("Z", "X") else (state, start_time)


def _is_snakemake(argv: list[bytes]) -> bool:
    """`snakemake ...` or `python -m snakemake ...` (not a shell running a script under .snakemake/)."""
    if any(os.path.basename(argument) == b"snakemake" for argument in argv[:2]):
        return True
    return any(first == b"-m" and second == b"snakemake" for first, second in zip(argv, argv[1:]))


def snakemake_ancestor() -> int | None:
    """PID of the nearest ancestor process that is Snakemake, or None (no /proc, or not run by
    Snakemake). Jobs run as its children, or under a shell it started (e.g. with --use-conda)."""
    pid = os.getppid()
    while pid > 1:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if _is_snakemake(handle.read().split(b"\0")):
                    return pid
            with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
                pid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return None
    return None


def stop_with_snakemake(poll_seconds: float = PARENT_POLL_SECONDS) -> threading.Thread | None:
    """Start a daemon thread that ends this process (SIGTERM to itself) once the Snakemake process that
    started it is gone, e.g. after `kill -9` of Snakemake; returns the thread, or None when no
    Snakemake ancestor can be found (then nothing is watched)."""
    pid = snakemake_ancestor()
    if pid is None:
        log.info("no Snakemake process among the ancestors: training does not watch a parent")
        return None
    alive = _process_state(pid)
    start_time = alive[1] if alive else None

    def watch() -> None:
        event = threading.Event()
        while not event.wait(poll_seconds):
            current = _process_state(pid)
            # A different start time: the pid was reused by another process.
            if current is None or current[1] != start_time:
                # A killed Snakemake leaves its lock on the working directory: --unlock comes first.
                log.error("Snakemake (pid %d) is gone: stopping training; the last checkpoint is kept: run "
                          "`snakemake --unlock` (the killed run left its lock), then `snakemake --rerun-incomplete` "
                          "resumes from it", pid)
                os.kill(os.getpid(), signal.SIGTERM)
                return

    thread = threading.Thread(target=watch, name="stop-with-snakemake", daemon=True)
    thread.start()
    return thread
