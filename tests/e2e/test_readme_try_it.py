"""The README's "Try it", run as a newcomer would: its commands as written (only the port is this test's), in a
second terminal that has nothing but SPACEHUB_URL and the server's SPACEHUB_DATA_DIR; then signing in to the web
UI with the password the README gave, then its Python and curl calls to the space.

`make run` itself is stood in for by a `spacehub serve` of a fresh data dir (what `make run` runs once installed).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from support.server import REPO, Server

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

README_PORT = "localhost:8000"


def _section(title: str) -> str:
    text = (REPO / "README.md").read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def _blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


def _commands(block: str) -> list[str]:
    """The block's command lines, without their trailing `# comments` (lines that are only a comment are output)."""
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    """A platform on a fresh data dir, and terminal 2's environment: no spacehub setting but the two the README
    names, and a config folder of its own (where `spacehub login` keeps the token)."""
    root = tmp_path_factory.mktemp("readme")
    server = Server(root / "data")
    server.start()
    terminal = {key: value for key, value in os.environ.items() if not key.startswith("SPACEHUB_")}
    terminal.update(SPACEHUB_DATA_DIR=str(server.data_dir), XDG_CONFIG_HOME=str(root / "config"),
                    PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    if server.env["SPACEHUB_DATABASE_URL"] != f"sqlite:///{server.data_dir / 'spacehub.db'}":
        terminal["SPACEHUB_DATABASE_URL"] = server.env["SPACEHUB_DATABASE_URL"]  # a `--db postgres` run
    yield server, terminal
    server.stop()
    server.kill_apps()


def _run(line: str, terminal: dict[str, str], port: str) -> str:
    line = line.replace(README_PORT, port)
    words = shlex.split(line)
    if words[0] == "export":
        key, _, value = words[1].partition("=")
        terminal[key] = value
        return ""
    if words[0] == ".venv/bin/spacehub":  # this venv's, wherever the checkout keeps it
        words[0] = str(Path(sys.executable).parent / "spacehub")
    done = subprocess.run(words, cwd=REPO, env=terminal, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"`{line}` failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def test_try_it_works_verbatim_in_a_second_terminal(fresh, browser: Browser) -> None:
    server, terminal = fresh
    port = f"localhost:{server.port}"
    section = _section("Try it")
    block = _blocks(section, "bash")[0]
    commands = _commands(block)
    assert commands[0] == "make run"  # terminal 1: the fixture's server

    outputs: list[str] = []
    for line in commands[1:]:
        if "<token>" in line:
            token = re.search(r"(sh_[A-Za-z0-9_-]+)", outputs[-1])
            assert token, outputs[-1]
            line = line.replace("<token>", token.group(1))
        outputs.append(_run(line, terminal, port))

    promised = re.search(r"# (Running: \S+)", block)
    assert promised, block
    assert promised.group(1).replace(README_PORT, port) in outputs[-1], outputs[-1]

    # Signing in to the web UI with the README's user and password.
    user, password = re.search(r"users create (\S+) --password (\S+)", block).groups()  # type: ignore[union-attr]
    context = browser.new_context(base_url=server.url)
    try:
        page = context.new_page()
        page.goto(f"http://{port}/login")
        page.fill("#username", user)
        page.fill("#password", password)
        page.click("form[action='/login'] button[type=submit]")
        page.wait_for_url("**/spaces")
        assert user in page.content()
    finally:
        context.close()

    # The Python call, as written (with this test's port).
    python = _blocks(section, "python")[0].replace(README_PORT, port)
    call = re.search(r"(Client\(.*?\)\.predict\(.*?\))\s+#\s*(.+)", python)
    assert call, python
    script = python.replace(call.group(0), f"print(repr({call.group(1)}))")
    answered = subprocess.run([sys.executable, "-c", script], env=terminal, capture_output=True, text=True,
                              timeout=300)
    assert answered.returncode == 0, answered.stderr
    assert answered.stdout.strip().splitlines()[-1] == call.group(2).strip(), answered.stdout  # after its banner

    # curl's two steps: the event id the first prints goes into the second.
    first, second = _commands(_blocks(section, "bash")[1])
    event = json.loads(_run(first, terminal, port))["event_id"]
    result = _run(second.replace("<event_id>", event), terminal, port)
    assert "event: complete" in result and '"Hello Ada!"' in result, result
