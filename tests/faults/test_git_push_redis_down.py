"""`git push` while Redis (which queues builds) is down, with an redis_server redis-server stopped and started under a
real `spacehub serve`: the push is refused before anything lands, and git shows why and when to try again;
a commit that did land meanwhile without its build (a REST upload, answered 503 once its build could not be
queued) is built by the reconciler once Redis is back, with no further push; then pushes build and serve again."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from support.faults import serving, static_tree, wait_for
from support.server import Server

pytestmark = pytest.mark.timeout(600)



@pytest.fixture
def server(tmp_path, redis_server):
    with serving(tmp_path / "data", env={"SPACEHUB_REDIS_URL": redis_server.url}, lost_job_s="2",
                 reconcile_interval_s="0.5") as srv:
        yield srv


def git(home: Path, *args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0",
           "LC_ALL": "C"}
    done = subprocess.run(["git", "-c", "user.name=Tester", "-c", "user.email=tester@example.com",
                           "-c", "init.defaultBranch=main", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)
    if check and done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def commit_page(home: Path, work: Path, title: str) -> str:
    (work / "README.md").write_text("---\ntitle: Git fault test\nsdk: static\napp_file: index.html\n---\n")
    (work / "index.html").write_text(f"<!doctype html><title>{title}</title><h1>{title}</h1>\n")
    git(home, "add", ".", cwd=work)
    git(home, "commit", "-m", title, cwd=work)
    return git(home, "rev-parse", "HEAD", cwd=work).stdout.strip()


def head(server: Server) -> str | None:
    return server.api.get("/api/spaces/admin/page").json()["sha"]


def serves(server: Server, text: str) -> bool | None:
    response = server.space_get("admin-page")
    return True if response.status_code == 200 and text in response.text else None


def test_git_push_while_redis_is_down(server, redis_server, tmp_path):
    assert server.api.post("/api/repos/create", json={"type": "space", "name": "page", "sdk": "static"}).is_success
    home, work = tmp_path / "git-home", tmp_path / "work"
    home.mkdir()
    url = f"http://user:{server.token}@localhost:{server.port}/spaces/admin/page.git"
    git(home, "clone", url, str(work))
    first = commit_page(home, work, "first revision")
    git(home, "push", "origin", "main", cwd=work)
    wait_for("the first revision served", lambda: serves(server, "first revision"), 120)

    redis_server.stop()
    commit_page(home, work, "pushed while redis was down")
    refused = git(home, "push", "origin", "main", cwd=work, check=False)
    assert refused.returncode != 0
    assert "Redis, which queues builds, is unavailable" in refused.stderr, refused.stderr
    assert "nothing was pushed" in refused.stderr, refused.stderr
    assert head(server) == first  # nothing landed
    assert serves(server, "first revision")  # and the proxy serves on

    # A commit that lands while its build cannot be queued (the REST upload commits, then answers 503)...
    uploaded = server.api.post("/api/spaces/admin/page/upload", params={"filename": "site.tar.gz"},
                               content=static_tree("uploaded while redis was down"),
                               headers={"Content-Type": "application/gzip"})
    assert uploaded.status_code == 503, uploaded.text
    landed = head(server)
    assert landed != first

    # ... is built once Redis is back, with no further push.
    redis_server.start()
    wait_for("the landed commit built and served", lambda: serves(server, "uploaded while redis was down"), 180)
    assert server.api.get("/api/spaces/admin/page/runtime").json()["sha"] == landed
    assert f"commit {landed[:7]} has no build; building it" in server.log.read_text()

    # And git pushes build and serve again.
    git(home, "fetch", "origin", cwd=work)
    git(home, "reset", "--hard", "origin/main", cwd=work)
    third = commit_page(home, work, "pushed after redis returned")
    git(home, "push", "origin", "main", cwd=work)
    wait_for("the pushed revision served", lambda: serves(server, "pushed after redis returned"), 120)
    assert head(server) == third
