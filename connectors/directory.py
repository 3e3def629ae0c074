"""A snapshot store in a local directory: the embedded default's stand-in for Redis.

Layout per pipeline::

    <root>/<pipeline>/v0000000001.snap   one file per version
    <root>/<pipeline>/latest             the newest version number, as text
    <root>/<pipeline>/fence              the highest fencing token a write has carried
    <root>/<pipeline>/.lock              held (flock) while a save runs

A blob is written to a temporary name, fsynced and renamed into place before ``latest``
moves to it by ``os.replace``, so a crash at any moment leaves ``latest`` naming a
complete blob. Saves from several processes are serialised by the lock file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator
from pathlib import Path

from connectors.exceptions import SnapshotNotFoundError, StaleFencingTokenError

__all__ = ["DirectoryStore", "validate_pipeline_name"]

_PIPELINE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_SNAP_RE = re.compile(r"^v(\d{10,})\.snap$")


def validate_pipeline_name(pipeline: str) -> str:
    """Return ``pipeline`` if it is safe as a path component and a key part, else raise."""
    if (
        not isinstance(pipeline, str)
        or not _PIPELINE_RE.fullmatch(pipeline)
        or pipeline in {".", ".."}
    ):
        msg = (
            f"pipeline must be 1-100 characters of letters, digits, '_', '.', '-' "
            f"(and not '.' or '..'), got {pipeline!r}"
        )
        raise ValueError(msg)
    return pipeline


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class DirectoryStore:
    """:class:`~connectors.base.SnapshotStore` on a local directory.

    Parameters
    ----------
    root
        Directory holding one subdirectory per pipeline; created when missing.
    keep
        How many of the newest versions survive pruning (at least 1).
    """

    def __init__(self, root: Path | str, keep: int = 5) -> None:
        if keep < 1:
            msg = f"keep must be >= 1, got {keep}"
            raise ValueError(msg)
        self.root = Path(root)
        self.keep = keep

    def _dir(self, pipeline: str) -> Path:
        return self.root / validate_pipeline_name(pipeline)

    @staticmethod
    def _snap_path(d: Path, version: int) -> Path:
        return d / f"v{version:010d}.snap"

    @contextlib.contextmanager
    def _locked(self, d: Path) -> Iterator[None]:
        d.mkdir(parents=True, exist_ok=True)
        with open(d / ".lock", "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    @staticmethod
    def _read_int(path: Path) -> int | None:
        try:
            text = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        return int(text) if text else None

    @staticmethod
    def _list_versions(d: Path) -> list[int]:
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            return []
        return sorted(int(m.group(1)) for n in names if (m := _SNAP_RE.fullmatch(n)))

    def save(self, pipeline: str, blob: bytes, *, fencing_token: int | None = None) -> int:
        """Store ``blob`` as a new version and point ``latest`` at it.

        A ``fencing_token`` lower than the highest one already seen for the pipeline
        raises :class:`StaleFencingTokenError` and writes nothing; ``None`` skips the check
        (single-writer setups without a lease).
        """
        d = self._dir(pipeline)
        with self._locked(d):
            fence_path = d / "fence"
            if fencing_token is not None:
                fence = self._read_int(fence_path)
                if fence is not None and fencing_token < fence:
                    msg = (
                        f"pipeline {pipeline!r}: fencing token {fencing_token} is older than "
                        f"{fence}; another worker owns this pipeline"
                    )
                    raise StaleFencingTokenError(msg)
                if fence is None or fencing_token > fence:
                    _write_atomic(fence_path, str(fencing_token).encode())
            existing = self._list_versions(d)
            latest = self._read_int(d / "latest") or 0
            version = max([latest, *existing]) + 1
            _write_atomic(self._snap_path(d, version), bytes(blob))
            # The blob's directory entry must be durable before ``latest`` can name it.
            _fsync_dir(d)
            _write_atomic(d / "latest", str(version).encode())
            _fsync_dir(d)
            for old in [*existing, version][: -self.keep]:
                with contextlib.suppress(FileNotFoundError):
                    self._snap_path(d, old).unlink()
        return version

    def load_latest(self, pipeline: str) -> tuple[int, bytes] | None:
        d = self._dir(pipeline)
        # Without the lock a concurrent save may prune the version ``latest`` named a
        # moment ago; re-reading ``latest`` then finds the newer one.
        for _ in range(10):
            version = self._read_int(d / "latest")
            if version is None:
                return None
            try:
                return version, self._snap_path(d, version).read_bytes()
            except FileNotFoundError:
                continue
        with self._locked(d):
            version = self._read_int(d / "latest")
            if version is None:
                return None
            return version, self.load(pipeline, version)

    def load(self, pipeline: str, version: int) -> bytes:
        path = self._snap_path(self._dir(pipeline), version)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            msg = f"pipeline {pipeline!r} has no snapshot version {version} (in {path.parent})"
            raise SnapshotNotFoundError(msg) from None

    def versions(self, pipeline: str) -> list[int]:
        return self._list_versions(self._dir(pipeline))

    def fence(self, pipeline: str) -> int | None:
        """The highest fencing token a save has carried, or None."""
        return self._read_int(self._dir(pipeline) / "fence")

    def close(self) -> None:
        """Nothing is held open between calls."""
