"""`spacehub stop` on a data dir that was never served: one clear line per part, exit 0, and nothing made there
(no database file as a side effect, no folders); on a database file with no tables (such a side effect of an older
stop), the same, without a traceback; on a folder that does not exist, a one-line error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.server import ADMIN_TOKEN


def stop(data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SPACEHUB_")}
    env.update(SPACEHUB_DATA_DIR=str(data_dir), SPACEHUB_ADMIN_TOKEN=ADMIN_TOKEN)  # a token is written on open
    return subprocess.run([sys.executable, "-m", "spacehub", "stop"], env=env, capture_output=True, text=True,
                          timeout=120)


def test_stop_on_a_never_used_data_dir_says_so_and_makes_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    result = stop(data_dir)
    assert result.returncode == 0, result.stderr
    assert f"apps: none recorded (no database at {data_dir / 'spacehub.db'}: this data dir was never served)" \
        in result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    assert list(data_dir.iterdir()) == []


def test_stop_on_an_empty_database_file_says_so(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "spacehub.db").touch()
    result = stop(data_dir)
    assert result.returncode == 0, result.stderr
    assert "apps: none recorded (the database has no tables yet: this data dir was never served)" in result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    assert sorted(p.name for p in data_dir.iterdir() if not p.name.startswith("spacehub.db")) == []


def test_stop_on_a_missing_data_dir_is_one_line(tmp_path: Path) -> None:
    result = stop(tmp_path / "nowhere")
    assert result.returncode != 0
    assert result.stderr.strip() == f"Error: no spacehub data dir at {tmp_path / 'nowhere'}"
    assert not (tmp_path / "nowhere").exists()
