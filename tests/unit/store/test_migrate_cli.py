"""``astrostream migrate`` end to end: the real command on a store of today's release.

``--to-path`` (a local-mode folder: the API a Qdrant server answers) stands in for a server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from qdrant_client import QdrantClient
from store_support import assert_same_folders

from services.cli.commands import cli
from services.kafka.broker import free_port

ROOT = Path(__file__).resolve().parents[3]


def env_of(folder: Path, **overrides: str) -> dict[str, str]:
    """This environment without its ASTRO_* variables, plus the store at ``folder``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASTRO_")}
    return {
        **env,
        "ASTRO_QDRANT_ENGINE": "local",  # the folder is today's local mode, not Edge
        "ASTRO_QDRANT_PATH": str(folder),
        "ASTRO_DATA_DIR": str(folder.parent),
        **overrides,
    }


def astrostream(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def run(args: list[str], env: dict[str, str]) -> Any:
    return CliRunner().invoke(cli, args, env=env)


def test_migrate_copies_everything_and_a_rerun_changes_nothing(
    release_folder: Path, tmp_path: Path
) -> None:
    target = tmp_path / "server"
    done = astrostream(
        "migrate", "--to-path", str(target), "--page-size", "32", env=env_of(release_folder)
    )
    assert done.returncode == 0, done.stderr
    assert "astro_sentences__fake-v1: 71/71 points" in done.stderr
    assert "counts verified" in done.stderr
    assert f"{target} holds 10 collections, 96 points and 3 aliases" in done.stdout
    assert "Traceback" not in done.stderr
    assert not (release_folder.parent / "migrate-progress.json").exists()
    again = run(["migrate", "--to-path", str(target)], env_of(release_folder))
    assert again.exit_code == 0, again.output
    assert_same_folders(release_folder, target)


def test_a_running_worker_is_named_and_nothing_is_copied(
    release_folder: Path, tmp_path: Path
) -> None:
    worker = QdrantClient(path=str(release_folder))  # holds the folder's lock, as a worker does
    try:
        result = run(["migrate", "--to-path", str(tmp_path / "server")], env_of(release_folder))
    finally:
        worker.close()
    assert result.exit_code == 1
    assert "open in another process" in result.output
    assert "Stop `astrostream up` or the worker first" in result.output
    assert not (tmp_path / "server").exists()


def test_an_unreachable_server_is_one_line_naming_it(release_folder: Path) -> None:
    port = free_port()  # nothing listens there
    env = env_of(release_folder, ASTRO_QDRANT_CONNECT_TIMEOUT_S="1")
    result = run(["migrate", "--to", f"http://127.0.0.1:{port}"], env)
    assert result.exit_code == 1
    assert f"Qdrant at 127.0.0.1:{port}" in result.output and "did not accept" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_what_migrate_refuses(release_folder: Path, tmp_path: Path) -> None:
    env = env_of(release_folder)
    neither = run(["migrate"], env)
    assert neither.exit_code == 2 and "exactly one of --to URL and --to-path" in neither.output
    itself = run(["migrate", "--to-path", str(release_folder)], env)
    assert itself.exit_code == 2 and "the embedded store itself" in itself.output
    server = run(["migrate", "--to-path", "x"], {**env, "ASTRO_QDRANT_URL": "http://q:6333"})
    assert server.exit_code == 1 and "already uses a server" in server.output
    empty = run(["migrate", "--to-path", "x"], env_of(tmp_path / "none" / "qdrant"))
    assert empty.exit_code == 1 and "nothing to migrate" in empty.output
