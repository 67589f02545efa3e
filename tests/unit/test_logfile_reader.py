"""Following an app's log file by offset and emptying it under its writer (`runtimes/logfile.py`), on real files.

The writer is what an app's stdout is: a descriptor opened with O_APPEND and kept open across every read and
truncation.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from spacehub.settings import Settings
from spacehub_runner.plugs import Handle, WiredRuntime
from spacehub_runner.runtimes.logfile import LONGEST_LINE, LogFileReader
from spacehub_runner.runtimes.process import ProcessRuntime
from spacehub_runner.supervisor import _new_lines, _Pumped


class Writer:
    """An appending writer, as the app's stdout is (the process runtime and the fork-server both open it so)."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def __call__(self, text: str | bytes) -> None:
        os.write(self.fd, text.encode() if isinstance(text, str) else text)

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture
def log(tmp_path: Path) -> Iterator[tuple[Path, Writer]]:
    path = tmp_path / "space-1-abc-1.log"
    writer = Writer(path)
    yield path, writer
    writer.close()


def test_only_lines_appended_since_the_last_read_come_and_a_partial_line_waits_for_its_end(
        log: tuple[Path, Writer]) -> None:
    path, write = log
    reader = LogFileReader(path)
    write("one\ntwo\nthr")
    assert list(reader.read()) == ["one", "two"]
    assert list(reader.read()) == []  # nothing new: nothing again
    write("ee\nfour\n")
    assert list(reader.read()) == ["three", "four"]
    write("no newline at the end")
    assert list(reader.read()) == []
    assert list(reader.rest()) == ["no newline at the end"]  # once its writer is gone
    assert list(reader.rest()) == []


def test_a_file_over_its_cap_is_emptied_once_read_and_the_writer_goes_on_at_its_start(
        log: tuple[Path, Writer]) -> None:
    path, write = log
    reader = LogFileReader(path)
    lines = [f"line {n:04d} " + "x" * 40 for n in range(40)]  # 2 KiB, 51 bytes a line
    write("".join(f"{line}\n" for line in lines[:20]))
    assert list(reader.read(cap=2048)) == lines[:20]  # just under the cap: kept
    assert path.stat().st_size == 1020
    write("".join(f"{line}\n" for line in lines[20:]) + "half a li")
    assert list(reader.read(cap=2048)) == lines[20:]  # over it: read to its end, then emptied
    assert path.stat().st_size == 0 and reader.offset == 0
    write("ne\nafter\n")  # O_APPEND: at the new end, which is the start; no hole
    assert path.read_bytes() == b"ne\nafter\n"
    assert list(reader.read(cap=2048)) == ["half a line", "after"]  # the line cut by the truncation is whole


def test_a_file_under_its_cap_is_left_alone(log: tuple[Path, Writer]) -> None:
    path, write = log
    reader = LogFileReader(path)
    write("small\n")
    assert list(reader.read(cap=1024)) == ["small"]
    assert path.read_bytes() == b"small\n"


def test_what_is_written_while_lines_are_passed_on_is_read_before_the_truncation(
        log: tuple[Path, Writer]) -> None:
    path, write = log
    reader = LogFileReader(path)
    write("".join(f"first {n}\n" for n in range(200)))  # 1890 bytes
    got = []
    for line in reader.read(cap=1900):
        got.append(line)
        if line.startswith("first") and int(line.split()[1]) % 50 == 0:
            write(f"meanwhile {line.split()[1]}\n")  # the app goes on writing while the supervisor copies
    assert got == [f"first {n}" for n in range(200)]  # under the cap: nothing emptied
    got = []
    for line in reader.read(cap=1900):
        got.append(line)
        if line == "meanwhile 150":  # after the read that found the end, before the truncation
            write("written while copying\n")
    assert got == [f"meanwhile {n}" for n in range(0, 200, 50)] + ["written while copying"]
    assert path.stat().st_size == 0
    write("later\n")
    assert list(reader.read(cap=1900)) == ["later"]


def test_an_app_that_never_pauses_still_has_its_file_emptied_and_is_told_what_went_uncopied(
        log: tuple[Path, Writer]) -> None:
    path, write = log
    reader = LogFileReader(path)
    write("".join(f"{n:04d}\n" for n in range(100)))  # 500 bytes
    assert len(list(reader.read(cap=1000))) == 100
    write("".join(f"{n:04d}\n" for n in range(100, 105)))  # now over the cap
    got, n = [], 105
    for line in reader.read(cap=520):
        got.append(line)
        if not line.startswith("[spacehub]"):
            write(f"{n:04d}\n")  # a line for every line copied: the file never stops growing
            n += 1
    *copied, said = got
    assert copied == [f"{k:04d}" for k in range(100, 100 + len(copied))]  # in order, none twice
    unread = n - 100 - len(copied)
    assert said == f"[spacehub] {unread * 5} bytes of output skipped: the app wrote them as its log file was emptied"
    assert path.stat().st_size == 0
    write("after\n")
    assert list(reader.read(cap=520)) == ["after"]


def test_lines_not_taken_come_again(log: tuple[Path, Writer]) -> None:
    path, write = log
    reader = LogFileReader(path)
    write("a\n")
    assert list(reader.read(cap=4)) == ["a"]
    write("b\nc\n")  # the file is now over the cap: emptied once read to its end
    lines = reader.read(cap=4)
    assert next(lines) == "b"
    lines.close()  # the caller stopped (its copy failed) after taking "b" but before asking for more
    assert path.read_bytes() == b"a\nb\nc\n"  # nothing emptied
    assert list(reader.read(cap=4)) == ["b", "c"]  # "b" was taken, not known to be copied: it comes again
    assert path.stat().st_size == 0


def test_a_backlog_over_the_cap_keeps_its_newest_part_and_says_what_was_skipped(
        log: tuple[Path, Writer]) -> None:
    path, write = log
    reader = LogFileReader(path)
    write("".join(f"{n:09d}\n" for n in range(1000)))  # 10 000 bytes, 10 a line
    lines = list(reader.read(cap=100))
    assert lines[0] == "[spacehub] 9900 bytes of output skipped: the app wrote more than 100 between two reads"
    assert lines[1:] == [f"{n:09d}" for n in range(990, 1000)]
    assert path.stat().st_size == 0


def test_a_replaced_file_is_read_from_its_start_after_the_old_ones_last_line(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_text("old 1\nold 2\nold unterminated")
    reader = LogFileReader(path)
    assert list(reader.read()) == ["old 1", "old 2"]
    fresh = tmp_path / "fresh.log"
    fresh.write_text("new 1\nnew 2\n")
    os.replace(fresh, path)
    assert list(reader.read()) == ["old unterminated", "new 1", "new 2"]
    assert list(reader.read()) == []


def test_a_file_shrunk_by_someone_else_is_read_from_its_start(log: tuple[Path, Writer]) -> None:
    path, write = log
    reader = LogFileReader(path)
    write("one\ntwo\n")
    assert list(reader.read()) == ["one", "two"]
    os.truncate(path, 0)  # e.g. logrotate's copytruncate
    write("three\n")
    assert list(reader.read()) == ["three"]


def test_a_missing_file_reads_as_nothing_until_it_appears(tmp_path: Path) -> None:
    path = tmp_path / "later.log"
    reader = LogFileReader(path)
    assert list(reader.read(cap=10)) == []
    path.write_text("here\n")
    assert list(reader.read(cap=10)) == ["here"]


def test_a_very_long_line_is_passed_on_in_pieces(log: tuple[Path, Writer]) -> None:
    path, write = log
    reader = LogFileReader(path)
    write(b"\r" + b"#" * (3 * LONGEST_LINE))  # a progress bar that never ends its line
    pieces = list(reader.read())
    assert [len(piece) for piece in pieces] == [LONGEST_LINE] * 3
    assert len(reader.partial) == 1
    write("\n")
    assert list(reader.read()) == ["#"]


def test_bytes_that_are_not_utf8_are_replaced(log: tuple[Path, Writer]) -> None:
    path, write = log
    write(b"caf\xe9 \xc3\xa9\n")
    assert list(LogFileReader(path).read()) == ["caf\ufffd \u00e9"]


def test_the_supervisor_reads_a_process_apps_log_by_offset_and_takes_its_last_line_when_it_exits(
        tmp_path: Path, log: tuple[Path, Writer]) -> None:
    path, write = log
    runtime = WiredRuntime.of(ProcessRuntime(Settings(data_dir=tmp_path)))
    handle = Handle(runtime="process", target="127.0.0.1:1", data={"log_file": str(path)})
    state = _Pumped()
    write("Running on local URL\nTraceback (most recent call last):\n")
    assert list(_new_lines(runtime, handle, state, 1 << 20, exited=False)) == [
        "Running on local URL", "Traceback (most recent call last):"]
    write("RuntimeError: boom")  # its last words, without a newline
    assert list(_new_lines(runtime, handle, state, 1 << 20, exited=False)) == []
    assert list(_new_lines(runtime, handle, state, 1 << 20, exited=True)) == ["RuntimeError: boom"]
    assert state.lines == 0  # the line count is for runtimes read whole (docker)
