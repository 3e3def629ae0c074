"""The checkpoint envelope: one signed blob holding model, monitors, metrics and offsets.

The header also records what the state's bits depend on: the package version, the state
format, and the numeric kernels (the BLAS library and the kernel it picked, torch's CPU
capability). The same stream gives the same bits only on the same kernels, so a restore
on other kernels is allowed but logged.

Layout: ``MAGIC | u32 header length | header JSON | payload | HMAC-SHA256``. The header
is readable without the key (for listing and lag monitoring); the payload is decoded only
after the HMAC over everything before it verifies, because it may hold pickled River
models and unpickling unverified bytes would run code chosen by whoever wrote them.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import importlib.metadata
import json
import pickle
import secrets
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stream.exceptions import ConfigError, SignatureError, SnapshotError

MAGIC = b"DRIFTLINE-SNAPSHOT\n"
#: 2: runtime state as plain data (no pickled engine classes); numeric kernels recorded
FORMAT_VERSION = 2
_MAC_LEN = 32


@dataclass(frozen=True)
class SnapshotHeader:
    pipeline: str
    model_version: int
    events_seen: int
    offsets: dict[str, int]
    learner: str
    learner_params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    created_at: float = 0.0
    format_version: int = FORMAT_VERSION
    payload_sha256: str = ""
    package_version: str = ""
    kernels: dict[str, Any] = field(default_factory=dict)

    def topic_offsets(self) -> dict[tuple[str, int], int]:
        return {decode_tp(k): v for k, v in self.offsets.items()}


def encode_tp(tp: tuple[str, int]) -> str:
    return f"{tp[0]}:{tp[1]}"


def decode_tp(key: str) -> tuple[str, int]:
    topic, _, partition = key.rpartition(":")
    return topic, int(partition)


def seal(header: SnapshotHeader, state: dict[str, Any], key: bytes) -> bytes:
    """Serialise and sign one snapshot."""
    payload = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    header_dict = dict(header.__dict__)
    header_dict["payload_sha256"] = hashlib.sha256(payload).hexdigest()
    header_dict["created_at"] = header.created_at or time.time()
    header_dict["package_version"] = header.package_version or package_version()
    header_dict["kernels"] = header.kernels or numeric_kernels()
    header_bytes = json.dumps(header_dict, sort_keys=True).encode()
    body = MAGIC + struct.pack(">I", len(header_bytes)) + header_bytes + payload
    return body + hmac.new(key, body, hashlib.sha256).digest()


def read_header(blob: bytes) -> SnapshotHeader:
    """The header alone, unverified: for display, never for loading state."""
    header, _, _ = _split(blob)
    return header


def open_snapshot(blob: bytes, key: bytes) -> tuple[SnapshotHeader, dict[str, Any]]:
    """Verify the signature, then decode; raise SignatureError for a blob we did not sign."""
    if len(blob) < len(MAGIC) + 4 + _MAC_LEN or not blob.startswith(MAGIC):
        raise SnapshotError("not a Driftline snapshot (bad magic bytes)")
    body, mac = blob[:-_MAC_LEN], blob[-_MAC_LEN:]
    if not hmac.compare_digest(mac, hmac.new(key, body, hashlib.sha256).digest()):
        raise SignatureError(
            "snapshot signature does not verify: it was written with another "
            "DRIFTLINE_SNAPSHOT_KEY or altered after writing; refusing to load it"
        )
    header, payload, _ = _split(blob)
    if hashlib.sha256(payload).hexdigest() != header.payload_sha256:
        raise SnapshotError("snapshot payload does not match its sha256")
    if header.format_version != FORMAT_VERSION:
        raise SnapshotError(
            f"snapshot format {header.format_version} (written by driftline "
            f"{header.package_version or '0.1'}) cannot be read by driftline {package_version()}, "
            f"which reads format {FORMAT_VERSION}; start the pipeline under a new name, or "
            "run the version that wrote it"
        )
    return header, pickle.loads(payload)  # noqa: S301 - signature verified above


def _split(blob: bytes) -> tuple[SnapshotHeader, bytes, bytes]:
    if not blob.startswith(MAGIC):
        raise SnapshotError("not a Driftline snapshot (bad magic bytes)")
    start = len(MAGIC)
    (n,) = struct.unpack(">I", blob[start : start + 4])
    header_bytes = blob[start + 4 : start + 4 + n]
    try:
        fields = json.loads(header_bytes)
        known = {f for f in SnapshotHeader.__dataclass_fields__}
        # a header from another format version may carry fields this one lacks; keep
        # reading so the version check can refuse it with a clear message
        header = SnapshotHeader(**{k: v for k, v in fields.items() if k in known})
    except (ValueError, TypeError) as exc:
        raise SnapshotError(f"snapshot header is unreadable: {exc}") from exc
    return header, blob[start + 4 + n : -_MAC_LEN], blob[-_MAC_LEN:]


@functools.cache
def package_version() -> str:
    try:
        return importlib.metadata.version("driftline")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


@functools.cache
def numeric_kernels() -> dict[str, Any]:
    """The BLAS libraries loaded and the kernel each picked, and torch's CPU capability."""
    import numpy  # noqa: F401 - its BLAS must be loaded for threadpoolctl to see it
    from threadpoolctl import threadpool_info

    blas = sorted(
        (
            {"library": i.get("internal_api"), "version": i.get("version"), "kernel": i.get("architecture")}
            for i in threadpool_info()
            if i.get("user_api") == "blas"
        ),
        key=lambda b: json.dumps(b, sort_keys=True),
    )
    out: dict[str, Any] = {"blas": blas}
    try:
        import torch

        out["torch"] = {"version": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    except ImportError:
        pass
    return out


def load_or_create_key(path: Path) -> bytes:
    """A per-installation key for the embedded default, kept beside its snapshots (mode 600)."""
    if path.exists():
        key = path.read_bytes().strip()
        if len(key) < 32:
            raise ConfigError(f"snapshot key file {path} holds under 32 bytes; delete it to make a new one")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    path.write_bytes(key)
    path.chmod(0o600)
    return key
