"""Following an app's log file as it grows, and keeping it small (the supervisor copies it to the run-log stream).

An app's output reaches its file through a descriptor opened with O_APPEND (the process runtime's plain start and
the fork-server both open it so, and the app inherits it as stdout and stderr). Every such write lands at the
file's end as it is at that moment, so the file can be emptied under a running app: its next write simply starts
the file afresh, with no hole. The reader therefore keeps a byte offset and reads only what was appended since
its last read, and once the file has grown past its cap and has been read to its end, it empties the file and
counts from 0 again.

Two limits, both of this mechanism rather than of the code: bytes written between the reader's last look at the
file's size and the truncation (one system call apart) are lost unsaid; and a writer without O_APPEND would go
on writing at its old position after a truncation, leaving a run of NUL bytes before it. An app that writes
faster than its lines are copied has the excess skipped, with a line saying how many bytes: the point of the cap
is that neither the file nor the work of one read grows without bound.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

# Read this much at most at a time, so that a large backlog never sits in memory at once.
_CHUNK = 256 * 1024

# A line this long without its newline (a progress bar redrawn with \r, a binary dump) is passed on in pieces of
# this size, so the unterminated line kept between reads stays small.
LONGEST_LINE = 64 * 1024

# Rounds of reading what was written while the last lines were passed on, waiting for the app to pause, before
# the file is emptied anyway (an app that never pauses loses what it wrote during the last round, said so).
_CATCH_UP_ROUNDS = 3


class LogFileReader:
    """The lines appended to one log file since the last read; holds only a position, never the file open."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0  # bytes of the current file read so far: passed on, or held in `partial`
        self.partial = b""  # the start of a line whose newline has not been written yet
        self.file_id: tuple[int, int] | None = None  # (device, inode) of the file `offset` counts in

    def read(self, cap: int | None = None) -> Iterator[str]:
        """The complete lines written since the last read, oldest first; nothing if the file does not exist.

        With `cap` (bytes), the file is emptied once it is over `cap` and has been read to its end, and a backlog
        over `cap` (an app that wrote more since the last read) is cut to its newest `cap` bytes, one line saying
        how much was skipped in place of the rest: each read costs at most about `cap`, however fast the app.

        The position moves as each line is taken, so lines not taken (the caller stopped) come again next time.
        """
        try:
            fd = _open(self.path, writable=cap is not None)
        except FileNotFoundError:
            return
        try:
            stat = os.fstat(fd)
            size = stat.st_size
            yield from self._notice_changes(stat)
            if cap is not None and size - self.offset > cap:
                yield self._skip_to(size - cap, cap)
            yield from self._read_to(fd, size)
            if cap is not None and self.offset > cap:
                yield from self._read_all_and_truncate(fd, cap)
        finally:
            os.close(fd)

    def rest(self) -> Iterator[str]:
        """The last line, which has no newline: take it once its writer is gone (the app has exited)."""
        if self.partial:
            yield _text(self.partial)
            self.partial = b""

    # -- helpers ------------------------------------------------------------------------------------------------

    def _notice_changes(self, stat: os.stat_result) -> Iterator[str]:
        """Start again at 0 in a file that replaced the one read so far, or that someone else truncated."""
        file_id = (stat.st_dev, stat.st_ino)
        if self.file_id is not None and file_id != self.file_id:
            # A new file under the same name: the old one's unterminated last line is all it still owes.
            yield from self.rest()
            self.offset = 0
        elif stat.st_size < self.offset:
            # Shrunk (truncated elsewhere): what is there now was appended since. The unterminated line stays,
            # as its writer's next bytes, now at the start, finish it.
            self.offset = 0
        self.file_id = file_id

    def _skip_to(self, offset: int, cap: int) -> str:
        skipped = offset - self.offset + len(self.partial)
        self.offset, self.partial = offset, b""
        return f"[spacehub] {skipped} bytes of output skipped: the app wrote more than {cap} between two reads"

    def _read_to(self, fd: int, end: int) -> Iterator[str]:
        """The lines from the offset up to `end` (a size seen: never chasing a writer that outruns the reads)."""
        while self.offset < end:
            chunk = os.pread(fd, min(_CHUNK, end - self.offset), self.offset)
            if not chunk:
                return
            yield from self._lines(chunk)

    def _lines(self, chunk: bytes) -> Iterator[str]:
        """The lines `chunk` (read at the offset) completes; its unterminated end is kept for the next one."""
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            yield _text(self.partial + chunk[start:end])
            self.partial, self.offset, start = b"", self.offset + end + 1 - start, end + 1
        self.partial += chunk[start:]
        self.offset += len(chunk) - start
        while len(self.partial) >= LONGEST_LINE:
            piece, rest = self.partial[:LONGEST_LINE], self.partial[LONGEST_LINE:]
            yield _text(piece)
            self.partial = rest

    def _read_all_and_truncate(self, fd: int, cap: int) -> Iterator[str]:
        """Pass on what was written while the lines were, then empty the file: once nothing new is there, or after
        a few rounds for an app that never pauses (so its file stays small too), saying how much went uncopied."""
        for _ in range(_CATCH_UP_ROUNDS):
            size = os.fstat(fd).st_size
            if size == self.offset or size - self.offset > cap:
                break
            yield from self._read_to(fd, size)
        # Only this size check comes between the last read and the truncation: what the app writes in those
        # microseconds is lost unsaid; what it wrote before and was not read yet is counted.
        size = os.fstat(fd).st_size
        try:
            os.ftruncate(fd, 0)
        except OSError:
            return  # not ours to write (opened read-only): the file grows on, as it did before there were caps
        unread, self.offset = size - self.offset, 0
        if unread > 0:
            # The rest of the unterminated line was among the unread bytes: it goes with them.
            skipped, self.partial = unread + len(self.partial), b""
            yield f"[spacehub] {skipped} bytes of output skipped: the app wrote them as its log file was emptied"


def _open(path: Path, *, writable: bool) -> int:
    if writable:
        try:
            return os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except PermissionError:
            pass
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


def _text(line: bytes) -> str:
    return line.decode("utf-8", "replace")
