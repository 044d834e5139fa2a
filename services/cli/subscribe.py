"""``astrostream subscribe``: manage related-work subscriptions through a running API."""

from __future__ import annotations

import json
from typing import Any

import click

from services.alerts.calibration import strength
from services.cli.common import api_request, settings_or_exit


def _call(method: str, path: str, *args: Any, **kwargs: Any) -> Any:
    """:func:`api_request` with the settings of this process."""
    return api_request(settings_or_exit(), method, path, *args, **kwargs)


def _echo(value: Any, as_json: bool, render: Any) -> None:
    click.echo(json.dumps(value, indent=2) if as_json else render(value))


def _describe(sub: dict[str, Any]) -> str:
    lines = [
        f"{sub['id']}  {sub.get('name') or '(no name)'}",
        f"  threshold {sub.get('threshold')}, min relevance {sub.get('min_relevance', 0)}, "
        f"{sub.get('interest_vectors')} interest vectors"
        + (f", categories {', '.join(sub['categories'])}" if sub.get("categories") else ""),
    ]
    lines += [f"  query: {q}" for q in sub.get("queries", [])]
    lines += [f"  paper: {a}" for a in sub.get("arxiv_ids", [])]
    if sub.get("webhook"):
        lines.append(f"  webhook: {sub['webhook']}")
    if sub.get("webhook_secret"):
        lines.append(f"  webhook secret (shown once): {sub['webhook_secret']}")
    return "\n".join(lines)


@click.group()
def subscribe() -> None:
    """Manage related-work alerts through a running API.

    A subscription holds free-text queries and arXiv ids of seed papers (your own, say);
    each new paper that resembles them becomes an alert with its evidence.

    \b
    Example: astrostream subscribe add --arxiv-id 2505.21107 --query "ram-pressure stripping"
    """


@subscribe.command("add")
@click.option("--name", default="", help="A name to recognise the subscription by.")
@click.option("--query", "queries", multiple=True, help="Free-text interest (repeatable).")
@click.option(
    "--arxiv-id", "arxiv_ids", multiple=True, help="Seed paper, e.g. your own (repeatable)."
)
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1),
    help="Paper score (0-1) from which a paper becomes an alert; default: the server's.",
)
@click.option(
    "--min-relevance",
    type=click.FloatRange(0, 1),
    help="Calibrated relevance (0-1, the share of recent papers an alert must beat).",
)
@click.option("--category", "categories", multiple=True, help="Only papers in this category.")
@click.option("--webhook", help="POST each alert to this URL (signed with HMAC-SHA256).")
@click.option(
    "--owner-key",
    envvar="ASTRO_OWNER_KEY",
    help="The key the web page showed you (or env ASTRO_OWNER_KEY): the subscription then "
    "belongs to you and shows on your web page. Without it, one made with the operator "
    "token belongs to no one and has no web page.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON answer.")
def add(
    name: str,
    queries: tuple[str, ...],
    arxiv_ids: tuple[str, ...],
    threshold: float | None,
    min_relevance: float | None,
    categories: tuple[str, ...],
    webhook: str | None,
    owner_key: str | None,
    as_json: bool,
) -> None:
    """Create a subscription from queries and seed papers.

    Give at least one --query or --arxiv-id; a seed paper must already be indexed.

    \b
    Example: astrostream subscribe add --name "my work" --arxiv-id 2505.21107 --threshold 0.08
    """
    if not queries and not arxiv_ids:
        raise click.UsageError("give at least one --query or --arxiv-id")
    body: dict[str, Any] = {
        "name": name,
        "queries": list(queries),
        "arxiv_ids": list(arxiv_ids),
        "categories": list(categories),
    }
    if threshold is not None:
        body["threshold"] = threshold
    if min_relevance is not None:
        body["min_relevance"] = min_relevance
    if webhook:
        body["webhook"] = webhook
    created = _call("POST", "/subscriptions", body, owner_key=(owner_key or "").strip() or None)
    _echo(created, as_json, _describe)


@subscribe.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON answer.")
def list_(as_json: bool) -> None:
    """List the subscriptions.

    \b
    Example: astrostream subscribe list --json
    """
    found = _call("GET", "/subscriptions")
    _echo(
        found,
        as_json,
        lambda f: "\n".join(_describe(s) for s in f["subscriptions"]) or "no subscriptions",
    )


@subscribe.command("show")
@click.argument("subscription_id")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON answer.")
def show(subscription_id: str, as_json: bool) -> None:
    """Show one subscription.

    \b
    Example: astrostream subscribe show 3f2c9a10-5a4e-5b8e-9d3e-2f1c0b7a6d54
    """
    sub = _call("GET", f"/subscriptions/{subscription_id}")
    _echo(sub, as_json, _describe)


@subscribe.command("alerts")
@click.argument("subscription_id")
@click.option(
    "--sort",
    type=click.Choice(["time", "score", "relevance"]),
    default="time",
    show_default=True,
    help="Newest first (time), best raw score first (score) or most relevant first (relevance).",
)
@click.option(
    "--limit", type=click.IntRange(1, 500), default=20, show_default=True, help="At most this many."
)
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON answer.")
def alerts(subscription_id: str, sort: str, limit: int, as_json: bool) -> None:
    """Show a subscription's alerts with their evidence.

    Each alert lists the paper, its score and which sentence matched which interest.

    \b
    Example: astrostream subscribe alerts 3f2c9a10-5a4e-5b8e-9d3e-2f1c0b7a6d54 --sort score
    """
    found = _call(
        "GET",
        f"/subscriptions/{subscription_id}/alerts",
        params={"sort": sort, "limit": limit},
    )

    def render(f: dict[str, Any]) -> str:
        lines: list[str] = []
        for a in f["alerts"]:
            rel = a.get("relevance")
            rated = (
                f"{rel:.3f} {strength(rel):11s}" if rel is not None else f"{'':5s} {'unrated':11s}"
            )
            lines.append(
                f"{a['score']:.3f}  {rated}  {a['arxiv_id']}v{a.get('version', 1)}  {a['title']}"
            )
            for m in a.get("matches", []):
                lines.append(f"    {m['score']:.3f}  [{m['interest'][:40]}]  {m['sentence']}")
        return "\n".join(lines) or "no alerts yet"

    _echo(found, as_json, render)


@subscribe.command("remove")
@click.argument("subscription_id")
def remove(subscription_id: str) -> None:
    """Delete a subscription with its interests and alerts.

    \b
    Example: astrostream subscribe remove 3f2c9a10-5a4e-5b8e-9d3e-2f1c0b7a6d54
    """
    _call("DELETE", f"/subscriptions/{subscription_id}")
    click.echo(f"removed {subscription_id}")


@subscribe.command("feedback")
@click.argument("subscription_id")
@click.argument("arxiv_id", required=False)
@click.option(
    "--label",
    type=click.Choice(["relevant", "not_relevant"]),
    help="Your judgement of ARXIV_ID; a paper labelled not_relevant never alerts again.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON answer.")
def feedback(subscription_id: str, arxiv_id: str | None, label: str | None, as_json: bool) -> None:
    """Label an alerted paper, or list the labels given.

    With ARXIV_ID and --label it records your judgement; without them it lists the labels.

    \b
    Example: astrostream subscribe feedback 3f2c9a10-5a4e-5b8e-9d3e-2f1c0b7a6d54 2505.21107 --label not_relevant
    """
    path = f"/subscriptions/{subscription_id}/feedback"
    if arxiv_id is None:
        if label is not None:
            raise click.UsageError("--label needs the ARXIV_ID it is about")
        found = _call("GET", path)
        _echo(
            found,
            as_json,
            lambda f: (
                "\n".join(f"{x['label']:13s} {x['arxiv_id']}  ({x['at']})" for x in f["feedback"])
                or "no feedback yet"
            ),
        )
        return
    if label is None:
        raise click.UsageError("give --label relevant or --label not_relevant")
    saved = _call("POST", path, {"arxiv_id": arxiv_id, "label": label})
    _echo(saved, as_json, lambda s: f"{s['arxiv_id']} marked {s['label']}")
