"""The worker commands fail fast, in one line, when Kafka does not answer."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from services.cli.commands import cli
from services.kafka.broker import free_port


@pytest.mark.parametrize("command", ["worker", "up"])
def test_unreachable_kafka_is_one_clear_error(command: str, tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    env = {
        "ASTRO_KAFKA_URL": f"kafka://127.0.0.1:{port}",
        "ASTRO_KAFKA_CONNECT_TIMEOUT_S": "1",
        "ASTRO_DATA_DIR": str(tmp_path),
    }
    result = CliRunner().invoke(cli, [command], env=env)
    assert result.exit_code == 1
    assert f"cannot reach Kafka at 127.0.0.1:{port}" in result.output
    assert "ASTRO_KAFKA_URL" in result.output
    assert "Traceback" not in result.output
