"""Files on disk: staged output directories with an owner lock, atomic writes, sha256 of files and trees.

An output is written into a hidden sibling staging directory and renamed into place only when complete. A lock
file beside it (`.<name>.lock`, held with flock for the whole run) makes a second run on the same output fail
cleanly while the first is alive; flock is released by the kernel when its owner dies, even by SIGKILL, so
the next run on that output can tell a dead run's staging directory from a live one and removes it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from embcc.core.errors import EmbccError

CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_files(paths: list[Path], root: Path | None = None) -> str:
    """One sha256 over several files: each file's name (relative to `root`, if given) and bytes, in order."""
    h = hashlib.sha256()
    for p in paths:
        if root is not None:
            h.update(str(p.relative_to(root)).encode() + b"\0")
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                h.update(chunk)
    return h.hexdigest()


def hash_tree(root: Path) -> str:
    """sha256 over every regular file under `root` (names and bytes), independent of walk order."""
    return sha256_files(sorted(p for p in root.rglob("*") if p.is_file() and ".git" not in p.parts), root)


def write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write to a temporary sibling, fsync, rename: a reader never sees half a file, a crash leaves none."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def _owner_lock(out: Path) -> Iterator[None]:
    """Hold `.<name>.lock` beside `out` exclusively, or fail at once if another live process holds it."""
    lock = out.parent / f".{out.name}.lock"
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            try:
                owner = lock.read_text().strip() or "?"
            except OSError:
                owner = "?"
            raise EmbccError(f"another embcc run is writing {out} (pid {owner})",
                             "wait for it to finish, or choose another --out") from None
        # The file may have been unlinked by a finishing owner between our open and our flock: retry on the new one.
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        os.close(fd)


def _staging_dirs(out: Path) -> list[Path]:
    return [p for p in out.parent.glob(f".{out.name}.*.tmp") if p.is_dir()]


@contextlib.contextmanager
def staged_dir(out: Path) -> Iterator[Path]:
    """Yield an empty staging directory next to `out`; on success it becomes `out`, on any error it vanishes.

    Staging directories of earlier runs on the same `out` whose owner is gone (the lock is free) are removed."""
    out = Path(out)
    if out.exists() or out.is_symlink():
        raise EmbccError(f"output {out} already exists", "choose a new --out directory or remove the old one")
    parent = out.parent
    if parent.exists() and not parent.is_dir():
        raise EmbccError(f"the parent of output {out} is a file, not a directory", "choose an --out inside a directory")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as e:
        raise EmbccError(f"cannot create the directory for output {out} (a part of its path is a file)",
                         "choose an --out inside a directory") from e
    except OSError as e:
        raise EmbccError(f"cannot create the directory for output {out} ({e.strerror})",
                         "choose a writable --out location") from e
    with _owner_lock(out):
        for stale in _staging_dirs(out):  # we hold the lock: nobody else is writing these
            shutil.rmtree(stale, ignore_errors=True)
        if out.exists():  # written by a run that finished while we waited for the lock
            raise EmbccError(f"output {out} already exists", "choose a new --out directory or remove the old one")
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent))
        except OSError as e:
            raise EmbccError(f"cannot write into {parent} ({e.strerror})", "choose a writable --out location") from e
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700: the artifact gets the user's umask like any mkdir
        try:
            yield tmp
            apply_umask(tmp)
            os.replace(tmp, out)
        except BaseException as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if not isinstance(e, EmbccError) and disk_full(e):  # an EmbccError already says which disk
                raise EmbccError(f"the disk holding {out} is full (nothing was written)",
                                 "free space or choose another --out") from e
            raise


def apply_umask(root: Path) -> None:
    """Give every file and directory under `root` the mode a plain open()/mkdir() would under the user's umask.

    Some writers create private files whatever the umask: ONNX's C++ external-data writer opens model.int8.data
    0600, ONNX Runtime's calibration cache is a mkstemp file (0600)."""
    mask = _umask()
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), 0o777 & ~mask)
        for f in filenames:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                os.chmod(p, 0o666 & ~mask)


def umask_mode(path: Path) -> None:
    """One file: the mode a plain open() would give it under the user's umask."""
    os.chmod(path, 0o666 & ~_umask())


def disk_full(e: BaseException) -> bool:
    """True when `e`, or an exception it was raised from, is a full disk or quota (libraries re-raise OSErrors
    as their own types; some keep only the message)."""
    seen: set[int] = set()
    x: BaseException | None = e
    while x is not None and id(x) not in seen:
        seen.add(id(x))
        if isinstance(x, OSError) and x.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(x) or "Disk quota exceeded" in str(x):
            return True
        x = x.__cause__ or x.__context__
    return False
