"""The dedupe rule and the durable state file (versions, digests, cursors)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.core.schemas import Paper
from services.ingest.records import Listing, listing_digest
from services.ingest.state import Decision, IngestState, Seen, decide


def listing(
    version: int = 1,
    *,
    abstract: str = "We observe things.",
    exact: bool = True,
    version_date: str | None = None,
    arxiv_id: str = "2512.12304",
) -> Listing:
    paper = Paper(arxiv_id=arxiv_id, version=version, title="T", abstract=abstract)
    return Listing(paper=paper, exact_version=exact, version_date=version_date)


def digest_of(item: Listing) -> str:
    return listing_digest(item.paper)


SAME = digest_of(listing())


@pytest.mark.parametrize(
    ("seen", "item", "expected"),
    [
        (None, listing(), Decision(True, 1, "new")),
        (Seen(1, SAME), listing(), Decision(False, 1, "duplicate")),
        (Seen(1, SAME), listing(2), Decision(True, 2, "new-version")),
        (Seen(3, SAME), listing(2), Decision(False, 2, "stale")),
        (Seen(1, SAME), listing(abstract="Changed."), Decision(True, 1, "changed")),
        # No exact version (OAI-PMH arXiv format): the version date decides.
        (
            Seen(1, SAME, "2025-12-01"),
            listing(2, exact=False, version_date="2025-12-15"),
            Decision(True, 2, "new-version"),
        ),
        (
            Seen(2, SAME, "2025-12-15"),
            listing(2, exact=False, version_date="2025-12-20"),
            Decision(True, 3, "new-version"),
        ),
        (
            Seen(3, SAME, "2025-12-15"),
            listing(2, exact=False, version_date="2025-12-15"),
            Decision(False, 3, "duplicate"),
        ),
        (
            Seen(3, SAME, None),
            listing(2, exact=False, version_date="2025-12-15", abstract="New."),
            Decision(True, 3, "changed"),
        ),
    ],
)
def test_decide(seen: Seen | None, item: Listing, expected: Decision) -> None:
    assert decide(seen, item, digest_of(item)) == expected


def test_plan_then_mark_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "ingest" / "state.sqlite"
    with IngestState(path) as state:
        planned = state.plan([listing(), listing(arxiv_id="2512.13221")])
        assert [p.decision.reason for p in planned] == ["new", "new"]
        # Not marked yet (the broker did not ack): planning again still publishes.
        assert all(p.decision.publish for p in state.plan([listing()]))
        state.mark_published(planned)
        state.set_cursor("api", {"newest": "2025-12-15T10:00:00+00:00"})
    with IngestState(path) as state:
        assert state.count() == 2
        assert [p.decision.reason for p in state.plan([listing()])] == ["duplicate"]
        assert state.cursor("api") == {"newest": "2025-12-15T10:00:00+00:00"}
        assert state.cursor("oai") == {}


def test_a_paper_listed_twice_in_one_batch_is_published_once(tmp_path: Path) -> None:
    with IngestState(tmp_path / "s.sqlite") as state:
        planned = state.plan([listing(2), listing(1), listing(2)])
        assert [(p.decision.publish, p.decision.reason) for p in planned] == [
            (True, "new"),
            (False, "stale"),
            (False, "duplicate"),
        ]


def test_inexact_version_is_renumbered_above_the_stored_one(tmp_path: Path) -> None:
    with IngestState(tmp_path / "s.sqlite") as state:
        state.mark_published(state.plan([listing(2, version_date="2025-12-10")]))
        (planned,) = state.plan([listing(2, exact=False, version_date="2025-12-15")])
        assert (planned.decision.reason, planned.paper.version) == ("new-version", 3)
        state.mark_published([planned])
        assert state.seen(["2512.12304"])["2512.12304"] == Seen(3, SAME, "2025-12-15")


def test_mark_never_lowers_a_version(tmp_path: Path) -> None:
    with IngestState(tmp_path / "s.sqlite") as state:
        state.mark_published(state.plan([listing(3)]))
        state.mark_published(state.plan([listing(1)], force=True))
        assert state.seen(["2512.12304"])["2512.12304"].version == 3


def test_force_publishes_duplicates(tmp_path: Path) -> None:
    with IngestState(tmp_path / "s.sqlite") as state:
        state.mark_published(state.plan([listing()]))
        (planned,) = state.plan([listing()], force=True)
        assert planned.decision == Decision(True, 1, "forced")
