"""The plug points' wiring: abilities found once per runtime from its Protocols (never its class), builders with
one signature, and the supervisor's log copy driven by what the wiring found (here over the fake runtime)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from spacehub.settings import Settings
from spacehub_runner import backends
from spacehub_runner.builders.docker import DockerBuilder
from spacehub_runner.builders.process import ProcessBuilder
from spacehub_runner.fakes import FakeBuilder, FakeHost, FakeRuntime
from spacehub_runner.plugs import BuildInputs, BuildPlan, RunSpec, WiredRuntime
from spacehub_runner.runtimes.docker import DockerRuntime
from spacehub_runner.runtimes.process import ProcessRuntime
from spacehub_runner.supervisor import _new_lines, _Pumped


def abilities(plugged: WiredRuntime) -> set[str]:
    return {name for name in ("freezer", "log_file", "managed", "storage") if getattr(plugged, name) is not None}


def test_each_runtime_is_wired_with_the_abilities_it_has(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert abilities(WiredRuntime.of(ProcessRuntime(settings))) == {"freezer", "log_file"}
    # (No engine is asked anything: the docker client connects on first use.)
    assert abilities(WiredRuntime.of(DockerRuntime(settings))) == {"freezer", "managed", "storage"}
    assert abilities(WiredRuntime.of(FakeRuntime(FakeHost()))) == {"freezer", "managed", "storage"}


def test_a_runtime_is_wired_once_per_settings(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    plugged = backends.wired(settings, "process")
    assert backends.wired(settings, "process") is plugged
    assert backends.runtime_for(settings, "process") is plugged.runtime
    assert backends.wired(Settings(data_dir=tmp_path), "process") is not plugged  # other settings: wired anew
    with pytest.raises(ValueError, match="unknown runtime 'nope'; known: docker, kubernetes, process"):
        backends.wired(settings, "nope")


def test_every_builder_takes_the_same_inputs() -> None:
    signatures = {cls.__name__: inspect.signature(cls.build) for cls in (ProcessBuilder, DockerBuilder, FakeBuilder)}
    assert len({str(sig) for sig in signatures.values()}) == 1, signatures
    assert list(signatures["ProcessBuilder"].parameters) == ["self", "plan", "src", "log", "inputs"]


def test_the_fake_builder_names_artifacts_by_content(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("print('hi')\n")
    plan = BuildPlan(recipe="gradio")
    builder = FakeBuilder()
    first = builder.build(plan, tmp_path, print)
    assert builder.build(plan, tmp_path, print) == first
    assert builder.build(plan, tmp_path, print, BuildInputs(variables={"A": "1"})).key != first.key
    secret = builder.build(plan, tmp_path, print, BuildInputs(secrets={"S": "one"}))
    assert builder.build(plan, tmp_path, print, BuildInputs(secrets={"S": "two"})).key == secret.key  # names only
    (tmp_path / "app.py").write_text("print('changed')\n")
    assert builder.build(plan, tmp_path, print).key != first.key


def test_log_copy_reads_whole_logs_of_a_runtime_without_log_files(tmp_path: Path) -> None:
    host = FakeHost()
    runtime = FakeRuntime(host)
    plugged = WiredRuntime.of(runtime)
    (tmp_path / "app.py").write_text("")
    plan = BuildPlan(recipe="gradio")
    artifact = FakeBuilder().build(plan, tmp_path, print)
    handle = runtime.start(RunSpec(space_id=1, space_key="a/b", revision="c" * 40, plan=plan, env={}), artifact)
    try:
        state = _Pumped()
        first = list(_new_lines(plugged, handle, state, cap=1 << 20, exited=False))
        assert first and "serving revision" in first[0]
        assert list(_new_lines(plugged, handle, state, cap=1 << 20, exited=False)) == []  # nothing new
        host.crash(handle, 7)
        assert list(_new_lines(plugged, handle, state, cap=1 << 20, exited=True)) == ["crashed with code 7"]
        assert runtime.poll(handle) == 7
    finally:
        host.close()
