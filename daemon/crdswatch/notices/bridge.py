"""Word the notices of the bridge: an upstream post tied to CRDS, a MAST program summary (pure)."""

from __future__ import annotations

from crdswatch.model import BridgeNotice
from crdswatch.notices.correlate import Correlation
from crdswatch.notices.mast import ProgramSummary
from crdswatch.notices.subscriptions import Subscription
from crdswatch.notices.upstream import Post

__all__ = ["announcement_line", "mast_notice", "post_audience", "post_notice", "program_audience"]

_BODY_LINES = 60  # the rest is behind the archive link


def _archive(public_url: str | None, context: str) -> str | None:
    return f"{public_url.rstrip('/')}/activations/{context}" if public_url else None


def _correlation_lines(correlation: Correlation, public_url: str | None, date: str) -> list[str]:
    lines: list[str] = []
    for seen, hits in correlation.found:
        where = _archive(public_url, seen.context)
        lines.append(f"Active in {seen.context} (activated {seen.date[:19].replace('T', ' ')} UTC): "
                     + ", ".join(hits) + (f"  {where}" if where else ""))
    if correlation.not_active:
        lines.append(f"Not active on the server as of {date[:19].replace('T', ' ')} UTC: "
                     + ", ".join(correlation.not_active))
    return lines


def post_notice(
    post: Post, correlation: Correlation, *, subscriber: str, reason: str, checked: str,
    public_url: str | None = None, unsubscribe_url: str | None = None,
) -> BridgeNotice:
    """`checked` (ISO) is when the server's activations were last read: "not active as of ..."."""
    body = post.body.split("\n")
    lines = [(f"Posted on {post.upstream} by {post.sender or 'unknown sender'} on "
             f"{post.date[:19].replace('T', ' ')} UTC:"), f"  {post.subject}", ""]
    tied = _correlation_lines(correlation, public_url, checked)
    if post.references.tickets:
        tied.append("Tickets: " + ", ".join(post.references.tickets))
    if tied:
        lines += [*tied, ""]
    lines += body[:_BODY_LINES]
    if len(body) > _BODY_LINES:
        lines += ["", f"[{len(body) - _BODY_LINES} more lines: read the whole post at the archive link]"]
    return BridgeNotice(
        subscriber=subscriber, kind="post", source=post.upstream,
        subject=f"[{post.upstream}] {post.subject}", lines=tuple(lines), reason=reason,
        link=post.link, unsubscribe_url=unsubscribe_url,
    )


def mast_notice(
    summary: ProgramSummary, cause: str | None, *, source: str, subscriber: str, reason: str,
    public_url: str | None = None, unsubscribe_url: str | None = None,
) -> BridgeNotice:
    headline = summary.headline()
    lines = [f"MAST: {headline} (last archived {summary.last_archived[:19].replace('T', ' ')} UTC)."]
    if cause:
        where = _archive(public_url, cause)
        lines.append(f"Likely cause: {cause}, the context most recently activated before then."
                     + (f"  {where}" if where else ""))
    else:
        lines.append("No CRDS activation seen before then; the cause is not known here.")
    if summary.filesets:
        shown = summary.filesets[:20]
        lines += ["", "Filesets:", *(f"  {f}" for f in shown)]
        if len(summary.filesets) > len(shown):
            lines.append(f"  ... and {len(summary.filesets) - len(shown)} more")
    return BridgeNotice(
        subscriber=subscriber, kind="mast", source=source,
        subject=f"[MAST {summary.mission.upper() or 'program'}] {headline}", lines=tuple(lines),
        reason=reason, link=None, unsubscribe_url=unsubscribe_url,
    )


def announcement_line(upstream: str, date: str, subject: str, link: str | None = None) -> str:
    """For an activation's notice: the post that announced what it activates."""
    return f"Announced on {upstream} on {date[:10]}: {subject}" + (f" <{link}>" if link else "")


def post_audience(
    subscriptions: list[Subscription], observatory: str, instruments: tuple[str, ...]
) -> list[tuple[Subscription, str]]:
    """Who hears about a post of a list on `observatory` about `instruments` (() = any), and why.

    A post is not about one reference type or mode, so only the observatory and instrument
    filters apply: a NIRSpec dark subscriber hears about every NIRSpec announcement.
    """
    wanted = {i.lower() for i in instruments}
    out = []
    for sub in subscriptions:
        f = sub.filters
        if f.observatories and observatory.lower() not in f.observatories:
            continue
        if f.instruments and wanted and not (f.instruments & wanted):
            continue
        about = ", ".join(sorted(i.upper() for i in (f.instruments & wanted) or wanted)) or "every instrument"
        out.append((sub, f"subscriber {sub.name!r} follows {observatory.upper()} {about}"))
    return out


def program_audience(subscriptions: list[Subscription], program: str) -> list[tuple[Subscription, str]]:
    """Subscribers that list `program`, with their reason."""
    return [(s, f"subscriber {s.name!r} follows program {program}") for s in subscriptions if program in s.programs]
