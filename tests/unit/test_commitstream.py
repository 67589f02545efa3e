"""The NDJSON commit parser, fed payloads built by huggingface_hub's own payload writer, in awkward chunks."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationDelete
from huggingface_hub._commit_api import _prepare_commit_payload

from spacehub.archives import UploadLimits
from spacehub.commitstream import CommitStreamParser, ParsedCommit
from spacehub.errors import InvalidInput, PayloadTooLarge, UnsafeUpload

LIMITS = UploadLimits(max_upload_bytes=2_000_000, max_tree_bytes=1_000_000, max_file_bytes=400_000,
                      max_entries=20)


def client_payload(files: dict[str, bytes], deletions: list[str] = (), folders: list[str] = (),  # type: ignore[assignment]
                   parent: str | None = None) -> bytes:
    """The exact bytes huggingface_hub sends for regular-mode additions and deletions."""
    operations: list[object] = []
    for path, content in files.items():
        op = CommitOperationAdd(path_in_repo=path, path_or_fileobj=content)
        op._upload_mode = "regular"
        operations.append(op)
    operations += [CommitOperationDelete(path_in_repo=p) for p in deletions]
    operations += [CommitOperationDelete(path_in_repo=p, is_folder=True) for p in folders]
    items = _prepare_commit_payload(operations, {}, "the summary", "the description", parent)  # type: ignore[arg-type]
    return b"".join(json.dumps(item).encode() + b"\n" for item in items)


def parse(body: bytes, tmp_path: Path, chunk: int | None = None, limits: UploadLimits = LIMITS) -> ParsedCommit:
    parser = CommitStreamParser(tmp_path, limits)
    step = chunk or len(body) or 1
    for at in range(0, len(body), step):
        parser.feed(body[at:at + step])
    return parser.finish()


@pytest.mark.parametrize("chunk", [1, 3, 7, 4096, 65536, None])
def test_additions_and_deletions_survive_any_chunking(tmp_path: Path, chunk: int | None) -> None:
    big = os.urandom(300_000)
    files = {"README.md": b"---\nsdk: gradio\n---\n", "sub dir/app.py": b"print('hi')\n", "empty.txt": b"",
             "weights.bin": big}
    if chunk == 1:
        files.pop("weights.bin")  # a byte at a time through 400 kB of base64 is slow and proves nothing more
    body = client_payload(files, deletions=["old.py"], folders=["old_folder/"], parent="a" * 40)
    commit = parse(body, tmp_path, chunk)
    assert commit.header.summary == "the summary"
    assert commit.header.description == "the description"
    assert commit.header.parent_commit == "a" * 40
    assert {path: spooled.read_bytes() for path, spooled in commit.additions.items()} == files
    assert commit.deletions == ["old.py", "old_folder"]


def test_a_file_line_in_another_key_order_is_parsed_whole(tmp_path: Path) -> None:
    header = {"key": "header", "value": {"summary": "s", "description": ""}}
    line = {"key": "file", "value": {"path": "a.txt", "encoding": "base64",
                                     "content": base64.b64encode(b"hello").decode()}}
    commit = parse((json.dumps(header) + "\n" + json.dumps(line)).encode(), tmp_path, chunk=5)
    assert commit.additions["a.txt"].read_bytes() == b"hello"
    assert commit.header.parent_commit is None


def test_a_file_over_the_file_cap_is_refused(tmp_path: Path) -> None:
    body = client_payload({"big.bin": b"x" * (LIMITS.max_file_bytes + 1)})
    with pytest.raises(PayloadTooLarge, match="over the limit"):
        parse(body, tmp_path, chunk=65536)


def test_files_over_the_tree_cap_together_are_refused(tmp_path: Path) -> None:
    body = client_payload({f"f{i}.bin": b"x" * 300_000 for i in range(4)})
    with pytest.raises(PayloadTooLarge, match="unpacked upload is over the limit"):
        parse(body, tmp_path, chunk=65536)


def test_a_body_over_the_upload_cap_is_refused_while_streaming(tmp_path: Path) -> None:
    limits = UploadLimits(max_upload_bytes=10_000, max_tree_bytes=10**9, max_file_bytes=10**9, max_entries=20)
    parser = CommitStreamParser(tmp_path, limits)
    parser.feed(client_payload({})[:-1])
    with pytest.raises(PayloadTooLarge, match="upload limit"):
        for _ in range(100):
            parser.feed(b"A" * 1000)


def test_too_many_operations_are_refused(tmp_path: Path) -> None:
    body = client_payload({f"f{i}.txt": b"x" for i in range(LIMITS.max_entries + 1)})
    with pytest.raises(PayloadTooLarge, match="more than 20 operations"):
        parse(body, tmp_path)


@pytest.mark.parametrize("path", ["../escape.txt", ".git/config", "a/.GIT/hooks/x", "/abs.txt"])
def test_paths_follow_the_archive_rules(tmp_path: Path, path: str) -> None:
    header = {"key": "header", "value": {"summary": "s", "description": ""}}
    line = {"key": "file", "value": {"content": "eA==", "path": path, "encoding": "base64"}}
    with pytest.raises(UnsafeUpload):
        parse((json.dumps(header) + "\n" + json.dumps(line) + "\n").encode(), tmp_path)


def test_a_path_added_twice_or_as_file_and_folder_is_refused(tmp_path: Path) -> None:
    header = json.dumps({"key": "header", "value": {"summary": "s", "description": ""}})
    twice = [json.dumps({"key": "file", "value": {"content": "eA==", "path": p, "encoding": "base64"}})
             for p in ("a.txt", "a.txt")]
    with pytest.raises(UnsafeUpload, match="duplicate"):
        parse("\n".join([header, *twice]).encode(), tmp_path)
    clash = [json.dumps({"key": "file", "value": {"content": "eA==", "path": p, "encoding": "base64"}})
             for p in ("a", "a/b.txt")]
    with pytest.raises(UnsafeUpload, match="already a file"):
        parse("\n".join([header, *clash]).encode(), tmp_path)


def test_lfs_operations_are_parsed_and_checked(tmp_path: Path) -> None:
    header = json.dumps({"key": "header", "value": {"summary": "s", "description": ""}})
    lfs = json.dumps({"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": "a" * 64, "size": 3}})
    copy = json.dumps({"key": "lfsFile", "value": {"path": "c.bin", "algo": "sha256", "oid": "b" * 64}})
    parsed = parse(f"{header}\n{lfs}\n{copy}\n".encode(), tmp_path)
    assert parsed.lfs_files == {"w.bin": ("a" * 64, 3), "c.bin": ("b" * 64, -1)}  # a copy sends no size
    bad = json.dumps({"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": "XYZ", "size": 3}})
    with pytest.raises(InvalidInput, match="sha256"):
        parse(f"{header}\n{bad}\n".encode(), tmp_path)
    both = json.dumps({"key": "file", "value": {"content": "eA==", "path": "w.bin", "encoding": "base64"}})
    with pytest.raises(UnsafeUpload, match="duplicate"):
        parse(f"{header}\n{lfs}\n{both}\n".encode(), tmp_path)


@pytest.mark.parametrize("body, message", [
    (b"", "empty"),
    (b'{"key": "deletedFile", "value": {"path": "a"}}\n', "first line"),
    (b'{"key": "header", "value": {"summary": "s"}}\n{"key": "header", "value": {}}\n', "two 'header'"),
    (b'{"key": "header", "value": {"summary": "s", "parentCommit": "XYZ"}}\n', "parentCommit"),
    (b'{"key": "header", "value": {}}\nnot json\n', "not JSON"),
    (b'{"key": "header", "value": {}}\n{"key": "copy", "value": {"path": "a"}}\n', "unknown commit operation"),
    (b'{"key": "header", "value": {}}\n{"key": "file", "value": {"content": "eA", "path": "a"}}\n', "truncated"),
    (b'{"key": "header", "value": {}}\n{"key": "file", "value": {"content": "e!A=", "path": "a"}}\n', "base64"),
    (b'{"key": "header", "value": {}}\n{"key": "file", "value": {"content": "eA==', "inside"),
])
def test_malformed_payloads_get_a_clear_error(tmp_path: Path, body: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse(body, tmp_path, chunk=8)


def test_a_huge_line_that_is_not_inline_content_is_capped(tmp_path: Path) -> None:
    limits = UploadLimits(max_upload_bytes=10**9, max_tree_bytes=10**9, max_file_bytes=1000, max_entries=20)
    parser = CommitStreamParser(tmp_path, limits)
    parser.feed(b'{"key": "header", "value": {}}\n{"key": "deletedFile", "value": {"path": "')
    with pytest.raises(PayloadTooLarge, match="longer than"):
        for _ in range(200):
            parser.feed(b"a" * 1000)
