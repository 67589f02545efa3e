"""Open sign-up lets strangers run code, so `spacehub serve` refuses it unless apps run in containers."""

from __future__ import annotations

import pytest

from support.server import Server


def test_serve_refuses_open_sign_up_on_the_process_runtime(tmp_path):
    server = Server(tmp_path / "data", signup="open", runtime="process")
    with pytest.raises(RuntimeError, match="SPACEHUB_SIGNUP=open needs SPACEHUB_RUNTIME=docker"):
        server.start(timeout=60)
    server.stop()
