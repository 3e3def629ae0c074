from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from connectors.base import SnapshotStore
from connectors.directory import DirectoryStore
from connectors.exceptions import SnapshotNotFoundError, StaleFencingTokenError


def test_is_a_snapshot_store(tmp_path: Path) -> None:
    assert isinstance(DirectoryStore(tmp_path), SnapshotStore)


def test_layout_on_disk(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path, keep=2)
    for i in range(3):
        store.save("p1", f"blob{i}".encode(), fencing_token=4)
    files = sorted(f.name for f in (tmp_path / "p1").iterdir())
    assert files == [".lock", "fence", "latest", "v0000000002.snap", "v0000000003.snap"]
    assert (tmp_path / "p1" / "latest").read_text() == "3"
    assert (tmp_path / "p1" / "v0000000003.snap").read_bytes() == b"blob2"
    assert store.fence("p1") == 4


def test_empty_pipeline(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    assert store.load_latest("nothing") is None
    assert store.versions("nothing") == []
    with pytest.raises(SnapshotNotFoundError, match="no snapshot version 1"):
        store.load("nothing", 1)


def test_versions_survive_reopen_and_never_repeat_after_pruning(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path, keep=1)
    assert [store.save("p", b"a"), store.save("p", b"b")] == [1, 2]
    reopened = DirectoryStore(tmp_path, keep=1)
    assert reopened.save("p", b"c") == 3
    assert reopened.versions("p") == [3]
    assert reopened.load_latest("p") == (3, b"c")


@pytest.mark.parametrize("name", ["..", ".", "a/b", "../etc", "", "x" * 101, "sp ace", "é"])
def test_unsafe_pipeline_names_rejected(tmp_path: Path, name: str) -> None:
    store = DirectoryStore(tmp_path)
    with pytest.raises(ValueError, match="pipeline"):
        store.save(name, b"x")
    assert list(tmp_path.iterdir()) == []


def test_keep_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keep"):
        DirectoryStore(tmp_path, keep=0)


def test_crash_leftovers_are_ignored(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    store.save("p", b"good")
    # A writer killed mid-save leaves a temporary file that is never a version.
    (tmp_path / "p" / ".v0000000002.snap.tmp-999").write_bytes(b"half")
    assert store.versions("p") == [1]
    assert store.load_latest("p") == (1, b"good")
    assert store.save("p", b"next") == 2


def test_unfenced_save_does_not_touch_the_fence(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    store.save("p", b"a", fencing_token=5)
    store.save("p", b"b")
    assert store.fence("p") == 5
    with pytest.raises(StaleFencingTokenError):
        store.save("p", b"c", fencing_token=4)
    assert store.load_latest("p") == (2, b"b")


def _save_many(root: str, n: int, tag: int) -> list[int]:
    store = DirectoryStore(root, keep=1000)
    return [store.save("shared", f"{tag}-{i}".encode()) for i in range(n)]


def test_concurrent_processes_get_distinct_versions(tmp_path: Path) -> None:
    # spawn, not fork: a fork of this many-threaded test process (Kafka clients, torch) can
    # inherit a lock held at the moment of the fork and hang
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        results = pool.starmap(_save_many, [(str(tmp_path), 15, t) for t in range(3)])
    versions = sorted(v for r in results for v in r)
    assert versions == list(range(1, 46))
    store = DirectoryStore(tmp_path)
    assert store.versions("shared") == versions
    assert store.load_latest("shared")[0] == 45  # type: ignore[index]
