"""Where Qdrant lives (ASTRO_DATA_DIR, ASTRO_QDRANT_PATH) and a clear, fast failure when it is down."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.core.errors import ConfigError, VectorStoreUnavailable
from services.core.settings import load_settings
from services.kafka.broker import free_port
from services.store.vectorstore import VectorStore


def test_the_embedded_store_lives_under_the_data_dir(tmp_path: Path) -> None:
    assert load_settings(data_dir=tmp_path).qdrant_path == tmp_path / "edge"
    assert (
        load_settings(data_dir=tmp_path, qdrant_engine="local").qdrant_path == tmp_path / "qdrant"
    )
    assert load_settings(data_dir=tmp_path, qdrant_path=":memory:").qdrant_path == Path(":memory:")


def test_data_dir_from_the_environment_moves_qdrant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASTRO_DATA_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("ASTRO_QDRANT_PATH", raising=False)
    settings = load_settings()
    assert settings.qdrant_path == tmp_path / "state" / "edge"
    store = VectorStore(settings, 8, "test")
    try:
        store.ensure_collections()
    finally:
        store.close()
    assert (tmp_path / "state" / "edge" / "aliases.json").is_file()


def test_unreachable_qdrant_is_one_line_naming_the_address() -> None:
    port = free_port()  # nothing listens there
    settings = load_settings(qdrant_url=f"http://127.0.0.1:{port}", qdrant_connect_timeout_s=1.5)
    started = time.perf_counter()
    with pytest.raises(VectorStoreUnavailable) as err:
        VectorStore(settings, 8, "test")
    assert time.perf_counter() - started < 5
    message = str(err.value)
    assert f"127.0.0.1:{port}" in message and "ASTRO_QDRANT_URL" in message
    assert "\n" not in message


class NotQdrant(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_error(404)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def web_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotQdrant)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_web_server_that_is_not_qdrant_is_a_config_error(web_server: str) -> None:
    store = VectorStore(load_settings(qdrant_url=web_server), 8, "test")
    try:
        with pytest.raises(ConfigError, match="is it a Qdrant server"):
            store.ensure_collections()
    finally:
        store.close()


def test_local_storage_is_tuned_to_wal_and_keeps_every_point(tmp_path: Path) -> None:
    """Local mode's SQLite files go to WAL on the first write; the points survive a reopen."""
    import sqlite3

    import numpy as np

    settings = load_settings(data_dir=tmp_path, qdrant_engine="local")
    store = VectorStore(settings, 4, "test")
    vectors = np.eye(4, dtype=np.float32)
    ids = [f"00000000-0000-0000-0000-00000000000{i}" for i in range(4)]
    try:
        store.ensure_collections()
        store.upsert(store.sentences, ids, vectors, [{"arxiv_id": f"p{i}"} for i in range(4)])
    finally:
        store.close()
    files = list((tmp_path / "qdrant").rglob("storage.sqlite"))
    assert files
    for path in files:
        with sqlite3.connect(path) as connection:
            assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store = VectorStore(settings, 4, "test")
    try:
        assert store.count(store.sentences) == 4
    finally:
        store.close()
