"""The local object store: content-addressed, verified on the way in, nothing kept from a refused upload."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from spacehub.errors import InvalidInput, PayloadTooLarge
from spacehub.lfs import attributes_with, lfs_patterns, parse_pointer, pointer_bytes, tracked
from spacehub.objectstore import LocalObjectStore


def test_streamed_upload_is_verified_and_deduplicated(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    data = os.urandom(3 * 1024 * 1024 + 5)
    oid = hashlib.sha256(data).hexdigest()
    staged = store.stage(len(data))
    for at in range(0, len(data), 1 << 20):
        staged.write(data[at:at + (1 << 20)])
    staged.finish(oid, len(data))
    assert store.size(oid) == len(data)
    assert b"".join(store.read(oid)) == data
    assert b"".join(store.read(oid, 10, 7)) == data[10:17]
    again = store.stage(len(data))
    again.write(data)
    again.finish(oid, len(data))  # stored once
    assert [o.oid for o in store.objects()] == [oid]
    assert not list((tmp_path / "staging").iterdir())


def test_parts_in_any_order_across_reopened_uploads(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    data = os.urandom(10_000)
    oid = hashlib.sha256(data).hexdigest()
    upload_id = store.stage(len(data)).upload_id
    store.stage(len(data), upload_id).write_at(6000, data[6000:])
    store.stage(len(data), upload_id).write_at(0, data[:6000])
    store.stage(len(data), upload_id).finish(oid, len(data))
    assert b"".join(store.read(oid)) == data


@pytest.mark.parametrize("mangle", ["flip", "short"])
def test_wrong_bytes_leave_nothing(tmp_path: Path, mangle: str) -> None:
    store = LocalObjectStore(tmp_path)
    data = b"the real bytes"
    oid = hashlib.sha256(data).hexdigest()
    staged = store.stage(len(data))
    staged.write(b"the fake bytes" if mangle == "flip" else data[:-1])
    with pytest.raises(InvalidInput):
        staged.finish(oid, len(data))
    assert store.size(oid) is None
    assert not list((tmp_path / "staging").iterdir())


def test_the_cap_holds_while_streaming(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    staged = store.stage(10)
    staged.write(b"12345")
    with pytest.raises(PayloadTooLarge):
        staged.write(b"678901")
    assert not list((tmp_path / "staging").iterdir())
    with pytest.raises(InvalidInput):
        store.size("../../etc/passwd")


def test_pointers_and_gitattributes() -> None:
    oid = "ab" * 32
    assert parse_pointer(pointer_bytes(oid, 42)) is not None
    assert parse_pointer(pointer_bytes(oid, 42)).size == 42  # type: ignore[union-attr]
    assert parse_pointer(b"version https://git-lfs.github.com/spec/v1\noid sha256:xyz\nsize 1\n") is None
    assert parse_pointer(b"just a small file\n") is None
    spec = lfs_patterns("*.bin filter=lfs diff=lfs merge=lfs -text\n*.txt text\n")
    assert tracked(spec, "a/b/w.bin") and not tracked(spec, "notes.txt")
    updated = attributes_with("*.bin filter=lfs diff=lfs merge=lfs -text", ["w.bin", "data/my file.csv"])
    assert updated is not None and "w.bin" not in updated
    assert tracked(lfs_patterns(updated), "data/my file.csv")
    assert not tracked(lfs_patterns(updated), "data/my_file.csv")
    assert attributes_with(updated, ["data/my file.csv"]) is None
