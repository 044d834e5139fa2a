"""Schemas, settings and ids: the contract's pure parts."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from services.core import ids
from services.core.errors import ConfigError, describe_validation_error
from services.core.schemas import DeadLetter, Paper, split_arxiv_id
from services.core.settings import Settings, load_settings


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2505.07925", ("2505.07925", None)),
        ("2505.07925v3", ("2505.07925", 3)),
        ("astro-ph/0601001", ("astro-ph/0601001", None)),
        ("astro-ph/0601001v2", ("astro-ph/0601001", 2)),
        ("0704.0001", ("0704.0001", None)),
    ],
)
def test_split_arxiv_id(raw: str, expected: tuple[str, int | None]) -> None:
    assert split_arxiv_id(raw) == expected


@pytest.mark.parametrize("raw", ["", "2505", "http://arxiv.org/abs/2505.07925", "25050.7925"])
def test_split_arxiv_id_rejects(raw: str) -> None:
    with pytest.raises(ValueError, match="not an arXiv id"):
        split_arxiv_id(raw)


def test_paper_takes_version_from_suffixed_id_and_ignores_unknown_fields() -> None:
    paper = Paper.model_validate(
        {
            "arxiv_id": "2505.07925v2",
            "title": " T ",
            "abstract": "A.",
            "extra": 1,
            "categories": ["astro-ph.GA", "astro-ph.CO"],
            "announced": "2025-05-13",
        }
    )
    assert (paper.arxiv_id, paper.version, paper.title) == ("2505.07925", 2, "T")
    assert paper.primary_category == "astro-ph.GA"
    assert paper.date == "2025-05-13"


def test_dead_letter_keeps_binary_as_base64() -> None:
    letter = DeadLetter.from_raw(
        stage="decode", error="bad", topic="t", partition=1, offset=7, key=b"k", value=b"\xff"
    )
    assert (letter.value, letter.value_encoding, letter.key) == ("/w==", "base64", "k")


def test_point_ids_are_deterministic_uuid5() -> None:
    a = ids.sentence_point_id("2505.07925", 1, 0)
    assert a == ids.sentence_point_id("2505.07925", 1, 0)
    assert uuid.UUID(a).version == 5
    assert a != ids.sentence_point_id("2505.07925", 2, 0)
    assert ids.alert_id("s", "p") == ids.alert_id("s", "p") != ids.alert_id("s", "q")


def test_bad_configuration_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASTRO_BATCH_SIZE", "0")
    with pytest.raises(ConfigError, match="ASTRO_BATCH_SIZE"):
        load_settings()
    monkeypatch.setenv("ASTRO_BATCH_SIZE", "8")
    monkeypatch.setenv("ASTRO_ROLES", "embed,cook")
    with pytest.raises(ConfigError, match="ASTRO_ROLES"):
        load_settings()


def test_broker_urls() -> None:
    s = Settings(kafka_url="k1:9092,kafka://k2:9093")
    assert s.bootstrap_servers == "k1:9092,k2:9093"
    assert Settings().broker_url == "kafka://127.0.0.1:9092"
    assert Settings().embedded_broker and not s.embedded_broker


def test_validation_errors_read_as_field_colon_message() -> None:
    with pytest.raises(ValidationError) as caught:
        Paper.model_validate({"arxiv_id": "nope", "title": "T", "abstract": "A", "extra": 1})
    lines = describe_validation_error(caught.value)
    assert lines[0].startswith("arxiv_id: not an arXiv id")  # no "Value error, " prefix
    assert describe_validation_error(caught.value, limit=1) == lines[:1]
    with pytest.raises(ValidationError) as whole:
        Paper.model_validate("not an object")
    assert describe_validation_error(whole.value, root="body")[0].startswith("body: ")


def test_content_digest_is_pinned() -> None:
    # Stored in every paper point: a change here would re-embed the whole collection.
    assert ids.content_digest("T", "A") == "c169345176250386e76fb1b95597d35a"
    assert ids.content_digest("TA") != ids.content_digest("T", "A")
