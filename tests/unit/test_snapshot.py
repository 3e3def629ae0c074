from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.exceptions import SignatureError, SnapshotError
from stream.snapshot import SnapshotHeader, load_or_create_key, open_snapshot, read_header, seal

KEY = b"k" * 32


def _header(**kw):
    base = dict(pipeline="p", model_version=3, events_seen=10, offsets={"events:0": 10, "events:1": 4}, learner="driftmoe")
    base.update(kw)
    return SnapshotHeader(**base)


def test_round_trip_keeps_header_and_state():
    state = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "n": 7, "blob": b"\x00\x01"}
    blob = seal(_header(), state, KEY)
    header, out = open_snapshot(blob, KEY)
    assert header.pipeline == "p" and header.model_version == 3 and header.events_seen == 10
    assert header.topic_offsets() == {("events", 0): 10, ("events", 1): 4}
    # exact: a serialisation round trip copies the bytes
    assert torch.equal(out["w"], state["w"]) and out["n"] == 7 and out["blob"] == b"\x00\x01"
    assert read_header(blob).payload_sha256 == header.payload_sha256


def test_wrong_key_is_refused():
    blob = seal(_header(), {"a": 1}, KEY)
    with pytest.raises(SignatureError, match="DRIFTLINE_SNAPSHOT_KEY"):
        open_snapshot(blob, b"x" * 32)


@pytest.mark.parametrize("position", [0, 30, -40, -1])
def test_any_flipped_byte_is_refused(position):
    blob = bytearray(seal(_header(), {"a": list(range(50))}, KEY))
    blob[position] ^= 0x01
    with pytest.raises(SnapshotError):
        open_snapshot(bytes(blob), KEY)


def test_not_a_snapshot():
    with pytest.raises(SnapshotError, match="bad magic"):
        open_snapshot(b"hello world" * 10, KEY)


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(st.text(max_size=8), st.one_of(st.integers(), st.floats(allow_nan=False), st.binary(max_size=64), st.text(max_size=16))))
def test_round_trip_property(state):
    _, out = open_snapshot(seal(_header(), state, KEY), KEY)
    assert out == state


def test_key_file_is_created_private_and_reused(tmp_path):
    path = tmp_path / "k" / "snapshot.key"
    key = load_or_create_key(path)
    assert len(key) == 64 and path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_key(path) == key
