"""The Hub's commit payload (NDJSON), parsed as it streams in, with the upload caps enforced on the way.

`huggingface_hub` sends one JSON object a line: a `header` first, then `file` (inline base64 content),
`lfsFile`, `deletedFile` and `deletedFolder` operations. A `file` line holds a whole file in base64, so it may
be hundreds of megabytes long: such a line is never held in memory. The client writes it as
`{"key": "file", "value": {"content": "<base64>", "path": ..., "encoding": "base64"}}`, content first; a line
that starts that way has its content decoded chunk by chunk straight into a spool file, and only the small rest
of the line is parsed as JSON. Any other line is parsed whole, and may be at most as long as the largest file's
base64 plus a little.

Caps (Settings): the body (`max_upload_bytes`), one decoded file (`max_file_bytes`), all decoded files
together (`max_tree_bytes`) and the number of operations (`max_entries`). Paths follow the archive rules
(`archives.check_relpath`): relative, no `..`, no `.git`, and a path is added once, never both a file and the
folder of another. An `lfsFile` operation names an object already uploaded through the LFS batch API
(sha256 and size); whether the caller may use it is checked when the commit is applied.
"""

from __future__ import annotations

import binascii
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from spacehub.archives import UploadCounter, UploadLimits, check_relpath
from spacehub.errors import InvalidInput, PayloadTooLarge

# The beginning of a `file` line as huggingface_hub writes it (json.dumps, content first).
_INLINE_FILE_START: Final = re.compile(rb'\s*\{\s*"key"\s*:\s*"file"\s*,\s*"value"\s*:\s*\{\s*"content"\s*:\s*"')
_MAX_SMALL_LINE: Final = 64 * 1024  # what follows inline content on its line; header and deletions lines
_LINE_SLACK: Final = 64 * 1024  # a whole `file` line: its base64 content plus this much JSON around it


@dataclass(frozen=True)
class CommitHeader:
    summary: str
    description: str
    parent_commit: str | None


@dataclass
class ParsedCommit:
    header: CommitHeader
    additions: dict[str, Path] = field(default_factory=dict)  # repository path -> spooled content
    deletions: list[str] = field(default_factory=list)  # files or folders
    lfs_files: dict[str, tuple[str, int]] = field(default_factory=dict)  # repository path -> (sha256, size)


class CommitStreamParser:
    """Feed the body chunk by chunk, then `finish()`. Spool files go to `spool_dir` (the caller removes it)."""

    def __init__(self, spool_dir: Path, limits: UploadLimits) -> None:
        self.spool_dir = spool_dir
        self.limits = limits
        self.body_bytes = 0
        self.operations = 0
        self._header: CommitHeader | None = None
        self._additions: dict[str, Path] = {}
        self._deletions: list[str] = []
        self._lfs_files: dict[str, tuple[str, int]] = {}
        self._counter = UploadCounter(files_are_body=False)
        self._line = bytearray()  # the current line, or in content mode the JSON after the content
        self._prefix = b""  # in content mode: the line's start, up to the content's opening quote
        self._tail = False  # after inline content: the rest of its line, parsed whole
        self._spool: IO[bytes] | None = None  # in content mode: where the decoded content goes
        self._spool_path: Path | None = None
        self._pending = b""  # in content mode: base64 characters not yet a multiple of 4
        self._decoded = 0  # in content mode: bytes of the current file so far
        self._spools = 0
        self._max_line = limits.max_file_bytes * 4 // 3 + 4 + _LINE_SLACK

    # Feeding --------------------------------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        self.body_bytes += len(chunk)
        if self.body_bytes > self.limits.max_upload_bytes:
            raise PayloadTooLarge(f"the commit is over the upload limit of {self.limits.max_upload_bytes} bytes")
        data = memoryview(chunk)
        while data:
            data = self._feed_content(data) if self._spool is not None else self._feed_line(data)

    def finish(self) -> ParsedCommit:
        if self._spool is not None:
            raise InvalidInput("the commit payload ends inside a file's content")
        if self._line.strip():
            self._complete_line(bytes(self._line))
        self._line.clear()
        if self._header is None:
            raise InvalidInput("the commit payload is empty: its first line must be the 'header'")
        return ParsedCommit(self._header, self._additions, self._deletions, self._lfs_files)

    def _feed_line(self, data: memoryview) -> memoryview:
        cap = _MAX_SMALL_LINE if self._tail else self._max_line
        end = bytes(data).find(b"\n")
        taken = end if end >= 0 else len(data)
        if len(self._line) + taken > cap:
            raise PayloadTooLarge(f"a line of the commit payload is longer than {cap} bytes")
        self._line += data[:taken]
        if end >= 0:
            line = bytes(self._line)
            self._line.clear()
            self._tail = False
            self._complete_line(line)
            return data[end + 1:]
        start = None if self._tail else _INLINE_FILE_START.match(self._line)
        if start is not None:  # a big inline file: stream its content from here on
            rest = memoryview(bytes(self._line[start.end():]))
            self._prefix = bytes(self._line[:start.end()])
            self._line.clear()
            self._open_spool()
            return rest
        return data[len(data):]

    def _feed_content(self, data: memoryview) -> memoryview:
        raw = bytes(data)
        quote = raw.find(b'"')
        encoded, rest = (raw, b"") if quote < 0 else (raw[:quote], raw[quote + 1:])
        self._decode(encoded, final=quote >= 0)
        if quote < 0:
            return data[len(data):]
        self._close_spool_for_tail()
        return memoryview(rest)

    # Inline content -------------------------------------------------------------------------------------------

    def _open_spool(self) -> None:
        self._count_operation()
        self._spools += 1
        fd, name = tempfile.mkstemp(prefix=f"add-{self._spools}-", dir=self.spool_dir)
        self._spool = os.fdopen(fd, "wb")
        self._spool_path = Path(name)
        self._pending, self._decoded = b"", 0

    def _decode(self, encoded: bytes, *, final: bool) -> None:
        assert self._spool is not None
        text = self._pending + encoded
        usable = len(text) if final else len(text) - len(text) % 4
        if final and usable % 4:
            raise InvalidInput("a file's base64 content is truncated (its length is not a multiple of 4)")
        self._pending = text[usable:]
        if not usable:
            return
        try:  # strict: any character outside the alphabet (an escape, a space) or misplaced padding is refused
            decoded = binascii.a2b_base64(text[:usable], strict_mode=True)
        except binascii.Error as exc:
            raise InvalidInput(f"a file's content is not plain base64: {exc}") from None
        self._decoded += len(decoded)
        if self._decoded > self.limits.max_file_bytes:
            raise PayloadTooLarge(f"a file in the commit is over the limit of {self.limits.max_file_bytes} bytes")
        self._counter.count_bytes("commit", len(decoded), self.limits)
        self._spool.write(decoded)

    def _close_spool_for_tail(self) -> None:
        """The content ended: the rest of its line (path, encoding) follows in line mode."""
        assert self._spool is not None
        self._spool.close()
        self._spool = None
        self._line = bytearray(self._prefix + b'"')  # the content, now an empty string
        self._tail = True

    # Whole lines ----------------------------------------------------------------------------------------------

    def _complete_line(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            item = json.loads(line)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"a line of the commit payload is not JSON: {exc}") from None
        if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
            raise InvalidInput("every line of the commit payload must be {\"key\": ..., \"value\": {...}}")
        key, value = item.get("key"), item["value"]
        spooled, self._spool_path = self._spool_path, None
        if self._header is None and key != "header":
            raise InvalidInput("the first line of the commit payload must be the 'header'")
        if key == "header":
            self._set_header(value)
        elif key == "file":
            self._add_file(value, spooled)
        elif key == "lfsFile":
            self._add_lfs_file(value)
        elif key in ("deletedFile", "deletedFolder"):
            self._delete(value)
        else:
            raise InvalidInput(f"unknown commit operation {key!r}")

    def _set_header(self, value: dict[str, Any]) -> None:
        if self._header is not None:
            raise InvalidInput("the commit payload has two 'header' lines")
        summary, description = value.get("summary", ""), value.get("description", "")
        parent = value.get("parentCommit")
        if not isinstance(summary, str) or not isinstance(description, str):
            raise InvalidInput("the commit header's summary and description must be strings")
        if parent is not None and (not isinstance(parent, str) or not re.fullmatch(r"[0-9a-f]{5,40}", parent)):
            raise InvalidInput("parentCommit must be a commit id (5 to 40 lower-case hex digits)")
        self._header = CommitHeader(summary, description, parent)

    def _add_file(self, value: dict[str, Any], spooled: Path | None) -> None:
        path = self._checked_path(value)
        encoding = value.get("encoding", "base64")
        if encoding != "base64":
            raise InvalidInput(f"file {path!r}: encoding must be 'base64' (got {encoding!r})")
        if spooled is None:  # a small line parsed whole
            content = value.get("content")
            if not isinstance(content, str):
                raise InvalidInput(f"file {path!r} has no content")
            self._open_spool()
            self._decode(content.encode("ascii", "replace"), final=True)
            assert self._spool is not None
            self._spool.close()
            self._spool = None
            spooled, self._spool_path = self._spool_path, None
        self._counter.claim_path(path, path)
        assert spooled is not None
        self._additions[path] = spooled

    def _add_lfs_file(self, value: dict[str, Any]) -> None:
        self._count_operation()
        path = self._checked_path(value)
        oid, size, algo = value.get("oid"), value.get("size", -1), value.get("algo", "sha256")
        if algo != "sha256" or not isinstance(oid, str) or not re.fullmatch(r"[0-9a-f]{64}", oid):
            raise InvalidInput(f"LFS file {path!r}: 'oid' must be a sha256 (64 lower-case hex digits)")
        if not isinstance(size, int) or isinstance(size, bool) or size < -1:
            raise InvalidInput(f"LFS file {path!r}: 'size' must be a byte count")
        self._counter.claim_path(path, path)
        self._lfs_files[path] = (oid, size)

    def _delete(self, value: dict[str, Any]) -> None:
        self._count_operation()
        path = self._checked_path(value, folder=True)
        self._deletions.append(path)

    def _checked_path(self, value: dict[str, Any], *, folder: bool = False) -> str:
        path = value.get("path")
        if not isinstance(path, str) or not path.strip("/"):
            raise InvalidInput("every commit operation needs a non-empty 'path'")
        return check_relpath(path.rstrip("/") if folder else path)

    def _count_operation(self) -> None:
        self.operations += 1
        if self.operations > self.limits.max_entries:
            raise PayloadTooLarge(f"the commit has more than {self.limits.max_entries} operations")
