"""Unit tests of trainer.registry: versions, staging, promotion rules, registry file, card."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from trainer.errors import TrainerError
from trainer.registry import (
    ModelEntry,
    Promotion,
    Registry,
    decide_promotion,
    insert_card_section,
    model_card_section,
    new_version,
    slug,
    staging_dir,
)

NOW = dt.datetime(2026, 3, 1, 12, 30, 5, tzinfo=dt.UTC)


def test_new_version_is_a_utc_timestamp_with_a_suffix_on_collision(tmp_path: Path) -> None:
    assert new_version(tmp_path, "m", NOW) == "20260301123005"
    (tmp_path / "m-20260301123005").mkdir()
    assert new_version(tmp_path, "m", NOW) == "20260301123005-2"
    (tmp_path / ".m-20260301123005-2.partial").mkdir()
    assert new_version(tmp_path, "m", NOW) == "20260301123005-3"
    assert new_version(tmp_path, "other", NOW) == "20260301123005"


def test_slug() -> None:
    assert slug("adsabs/astroBERT") == "adsabs-astrobert"
    assert slug("All MiniLM L6 v2!") == "all-minilm-l6-v2"
    assert slug("///") == "model"


def test_staging_dir_renames_on_success_and_cleans_up_on_failure(tmp_path: Path) -> None:
    with staging_dir(tmp_path / "out", "m-1") as stage:
        (stage / "f").write_text("x")
        assert stage.name.startswith(".")
    assert (tmp_path / "out" / "m-1" / "f").read_text() == "x"
    with pytest.raises(RuntimeError), staging_dir(tmp_path / "out", "m-2") as stage:
        (stage / "f").write_text("x")
        raise RuntimeError("boom")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["m-1"]


@pytest.mark.parametrize(
    ("score", "reference", "force", "enabled", "promoted", "reason"),
    [
        (0.8, 0.7, False, True, True, "beats base"),
        (0.7, 0.7, False, True, False, "does not beat base"),
        (0.6, 0.7, False, True, False, "does not beat base"),
        (0.6, 0.7, True, True, True, "--force"),
        (0.9, 0.7, False, False, False, "--no-promote"),
        (0.5, None, False, True, True, "nothing to compare"),
    ],
)
def test_decide_promotion(
    score: float,
    reference: float | None,
    force: bool,
    enabled: bool,
    promoted: bool,
    reason: str,
) -> None:
    decision = decide_promotion(
        score, reference, "base", metric="ndcg@10", force=force, enabled=enabled
    )
    assert decision.promoted is promoted
    assert reason in decision.reason and "ndcg@10" in decision.reason


def entry(out: Path, version: str, ndcg: float) -> ModelEntry:
    path = out / f"m-{version}"
    path.mkdir(parents=True)
    return ModelEntry("m", version, str(path), "2026-03-01T00:00:00+00:00", {"ndcg@10": ndcg})


def test_registry_records_versions_and_moves_current(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    assert registry.current() is None and registry.entries() == []
    registry.record(entry(tmp_path, "1", 0.5), promote=True)
    registry.record(entry(tmp_path, "2", 0.4), promote=False)
    current = registry.current()
    assert current is not None and current.version == "1"
    assert (tmp_path / "current").resolve() == (tmp_path / "m-1").resolve()
    assert (tmp_path / "current").readlink() == Path("m-1")  # relative: the folder can move
    registry.record(entry(tmp_path, "3", 0.6), promote=True)
    assert registry.current().version == "3"  # type: ignore[union-attr]
    assert (tmp_path / "current").resolve() == (tmp_path / "m-3").resolve()
    data = json.loads((tmp_path / "registry.json").read_text())
    assert data["current"] == "m-3"
    assert [(m["version"], m["promoted"]) for m in data["models"]] == [
        ("1", True),
        ("2", False),
        ("3", True),
    ]


def test_registry_leaves_a_real_current_directory_alone(tmp_path: Path) -> None:
    (tmp_path / "current").mkdir()
    Registry(tmp_path).record(entry(tmp_path, "1", 0.5), promote=True)
    assert not (tmp_path / "current").is_symlink()
    assert Registry(tmp_path).current().version == "1"  # type: ignore[union-attr]


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_a_broken_registry_file_is_a_clear_error(tmp_path: Path, content: str) -> None:
    (tmp_path / "registry.json").write_text(content)
    with pytest.raises(TrainerError, match=r"registry\.json"):
        Registry(tmp_path).current()


def test_model_card_section_goes_before_the_training_details(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# m\n\n## Usage\n\n## Training Details\n\nstuff\n")
    section = model_card_section(
        "m",
        "1",
        {"base": {"ndcg@10": 0.5}, "fine-tuned": {"ndcg@10": 0.625}},
        ["ndcg@10"],
        "10 papers",
        ["Source: x"],
        Promotion(True, "beats base", "base", 0.5, 0.625),
    )
    insert_card_section(readme, section)
    text = readme.read_text()
    assert text.index("## Evaluation (astrostream `m-1`)") < text.index("## Training Details")
    assert "| fine-tuned | 0.6250 |" in text and "- Source: x" in text
    other = tmp_path / "other.md"
    insert_card_section(other, section)
    assert other.read_text().strip().endswith("- Source: x")
