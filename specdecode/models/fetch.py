"""Filling the model cache without leaving debris, and trusting what is in it only after a checksum.

* ``work_dir``: a temporary folder in the cache named after the process that made it (``.fetch-PID-*``),
  removed when the fetch ends however it ends; a later fetch removes the folders of processes that are gone
  (a fetch killed with SIGKILL, or one from before this rule). Every OS error (a read-only cache, a full disk,
  an immutable folder) becomes one ``ValueError`` line.
* ``record_checksums`` / ``verify``: the size and SHA-256 of each cached file, written when the cache entry is
  built and checked once per process before the file is loaded.

Not here: what is fetched (``registry``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from safetensors import SafetensorError

from .cache import CACHE_ENV

MANIFEST = ".complete"
_VERIFIED: set = set()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(root: Path) -> None:
    """Remove work folders left by fetches whose process is gone (unnamed ones: when older than an hour)."""
    for d in root.glob(".fetch-*"):
        pid = d.name.split("-")[1] if d.name.count("-") >= 2 else ""
        stale = not _alive(int(pid)) if pid.isdigit() else time.time() - d.stat().st_mtime > 3600
        if stale and int(pid or 0) != os.getpid():
            shutil.rmtree(d, ignore_errors=True)


def os_error(root: Path, exc: BaseException) -> ValueError:
    reason = getattr(exc, "strerror", None) or str(exc)
    if getattr(exc, "errno", None) == errno.ENOSPC or "No space" in str(exc):
        reason = "the disk is full"
    return ValueError(
        f"could not write the model cache in {root} ({reason}); free space or set {CACHE_ENV} to another folder"
    )


@contextlib.contextmanager
def work_dir(root: Path):
    """A temporary folder in ``root`` for one fetch, always removed afterwards."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        sweep_stale(root)
        tmp = Path(tempfile.mkdtemp(prefix=f".fetch-{os.getpid()}-", dir=root))
    except OSError as exc:
        raise ValueError(
            f"cannot write to the model cache {root} ({exc.strerror or exc}); set {CACHE_ENV} to a writable folder"
        ) from None
    try:
        yield tmp
    except (OSError, SafetensorError) as exc:
        raise os_error(root, exc) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def record_checksums(folder: Path, names: list[str]) -> None:
    """Write the manifest of ``folder``: size and SHA-256 of each named file (it also marks the entry complete)."""
    files = {n: {"size": (folder / n).stat().st_size, "sha256": _digest(folder / n)} for n in names}
    (folder / MANIFEST).write_text(json.dumps({"files": files}, indent=1) + "\n")


def verify(folder: Path, name: str) -> None:
    """Check ``folder/name`` against the manifest, once per process; an entry made before manifests existed
    gets one recorded now."""
    path = folder / name
    if path in _VERIFIED:
        return
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        manifest = {}
    want = manifest.get("files", {}).get(name) if isinstance(manifest, dict) else None
    if not path.exists():
        raise ValueError(
            f"the cached model in {folder} is corrupt or incomplete ({name} is missing); delete that folder "
            f"and run again"
        )
    if want is None:  # an older cache entry: trust it once, remember it from now on
        files = manifest.get("files", {}) if isinstance(manifest, dict) else {}
        files[name] = {"size": path.stat().st_size, "sha256": _digest(path)}
        with contextlib.suppress(OSError):
            (folder / MANIFEST).write_text(json.dumps({"files": files}, indent=1) + "\n")
    elif path.stat().st_size != want["size"] or _digest(path) != want["sha256"]:
        raise ValueError(
            f"the cached model file {path} is corrupt (its checksum does not match the one recorded when "
            f"it was fetched); delete {folder} and run again"
        )
    _VERIFIED.add(path)
