"""E-mail: the SMTP connection settings, the digest message (text + HTML), and sending it.

The message is built by a pure function; :func:`send_sync` speaks SMTP with the standard
library (run it in a thread). Each digest carries a one-click unsubscribe link (RFC 8058)
and a ``Message-ID`` derived from the digest id, so a digest re-sent after a crash is the
same message to the receiving side.
"""

from __future__ import annotations

import html
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from services.alerts.calibration import strength

EVIDENCE_SHOWN = 2  # sentences quoted per paper
SMTP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class SmtpConfig:
    """Where and how to send: parsed from ``ASTRO_SMTP_URL``."""

    host: str
    port: int
    tls: bool  # smtps:// (TLS from the first byte)
    starttls: bool
    user: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> SmtpConfig:
        """``smtp://user:pass@host:port?starttls=1`` or ``smtps://…`` (ports 25 and 465 by default).

        Raises:
            ValueError: for another scheme or no host.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("expected smtp://[user:pass@]host[:port][?starttls=1] or smtps://…")
        tls = parts.scheme == "smtps"
        flags = parse_qs(parts.query)
        starttls = flags.get("starttls", ["0"])[-1].lower() in ("1", "true", "yes")
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if tls else 25),
            tls=tls,
            starttls=starttls and not tls,
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


def send_sync(config: SmtpConfig, message: EmailMessage) -> None:
    """Deliver one message (blocking).

    Raises:
        smtplib.SMTPException, OSError: the server refused it or could not be reached.
    """
    context = ssl.create_default_context()
    client: smtplib.SMTP
    if config.tls:
        client = smtplib.SMTP_SSL(config.host, config.port, timeout=SMTP_TIMEOUT_S, context=context)
    else:
        client = smtplib.SMTP(config.host, config.port, timeout=SMTP_TIMEOUT_S)
    with client:
        if config.starttls:
            client.starttls(context=context)
        if config.user:
            client.login(config.user, config.password or "")
        client.send_message(message)


def _ranked(alerts: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Best first: calibrated relevance, then raw score (alerts without relevance last)."""

    def key(a: Mapping[str, Any]) -> tuple[float, float, str]:
        relevance = a.get("relevance")
        rank = float(relevance) if isinstance(relevance, int | float) else -1.0
        return (-rank, -float(a.get("score") or 0.0), str(a.get("arxiv_id", "")))

    return sorted(alerts, key=key)


def _strength_line(alert: Mapping[str, Any]) -> str:
    relevance = alert.get("relevance")
    value = float(relevance) if isinstance(relevance, int | float) else None
    line = strength(value) + " match"
    if value is not None:
        line += f" (better than {value:.0%} of recent papers)"
    if alert.get("reason"):
        line += f"; {alert['reason']}"
    return line


def digest_message(
    *,
    name: str,
    to: str,
    sender: str,
    alerts: Sequence[Mapping[str, Any]],
    papers: Mapping[str, Mapping[str, Any]],
    unsubscribe_url: str,
    feed_url: str | None,
    digest_id: str,
) -> EmailMessage:
    """One multipart/alternative digest: the new alerts, ranked, with evidence and links."""
    ranked = _ranked(alerts)
    title = name or "your subscription"
    count = f"{len(ranked)} new paper" + ("" if len(ranked) == 1 else "s")
    text_lines = [f"{count} for {title}", ""]
    items: list[str] = []
    for n, alert in enumerate(ranked, 1):
        arxiv_id = str(alert.get("arxiv_id", ""))
        paper = papers.get(arxiv_id, {})
        authors = ", ".join(list(paper.get("authors") or [])[:6])
        evidence = [
            (str(m.get("sentence", "")), str(m.get("interest", "")))
            for m in list(alert.get("matches") or [])[:EVIDENCE_SHOWN]
        ]
        abs_url, pdf_url = f"https://arxiv.org/abs/{arxiv_id}", f"https://arxiv.org/pdf/{arxiv_id}"
        text_lines += [f"{n}. {alert.get('title', arxiv_id)}"]
        if authors:
            text_lines.append(f"   {authors}")
        text_lines.append(f"   {_strength_line(alert)}")
        text_lines += [f"   “{s}” (matches {i})" for s, i in evidence]
        text_lines += [f"   {abs_url}  (PDF: {pdf_url})", ""]
        quotes = "".join(
            f"<li>“{html.escape(s)}” <small>(matches {html.escape(i)})</small></li>"
            for s, i in evidence
        )
        items.append(
            f'<li><p><a href="{html.escape(abs_url)}"><strong>'
            f"{html.escape(str(alert.get('title', arxiv_id)))}</strong></a>"
            + (f"<br>{html.escape(authors)}" if authors else "")
            + f"<br><em>{html.escape(_strength_line(alert))}</em>"
            f' · <a href="{html.escape(pdf_url)}">PDF</a></p>'
            + (f"<ul>{quotes}</ul>" if quotes else "")
            + "</li>"
        )
    footer = f"Stop these e-mails: {unsubscribe_url}"
    if feed_url:
        footer = f"Atom feed: {feed_url}\n" + footer
    text_lines.append(footer)
    links = f'<a href="{html.escape(unsubscribe_url)}">Stop these e-mails</a>'
    if feed_url:
        links = f'<a href="{html.escape(feed_url)}">Atom feed</a> · ' + links
    body_html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(count)}</title></head><body>"
        f"<h1>{html.escape(count)} for {html.escape(title)}</h1>"
        f"<ol>{''.join(items)}</ol><p>{links}</p></body></html>"
    )
    message = EmailMessage()
    message["Subject"] = f"astrostream: {count} for {title}"
    message["From"] = sender
    message["To"] = to
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = f"<digest-{digest_id}@astrostream>"
    message["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message["Auto-Submitted"] = "auto-generated"
    message.set_content("\n".join(text_lines))
    message.add_alternative(body_html, subtype="html")
    return message
