"""Atom feed of recent activations and what they changed (pure: records in, XML bytes out)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from crdswatch.model import SourceKey
from crdswatch.notices.codec import record_changes
from crdswatch.render.clean import clean_line

__all__ = ["atom_feed"]

ATOM = "http://www.w3.org/2005/Atom"


def _affected(record: dict[str, Any] | None) -> str:
    if not record:
        return "baseline (nothing reported)"
    found: dict[str, set[str]] = {}
    for change in record_changes(record):
        if change.instrument:
            found.setdefault(change.instrument.upper(), set()).update([change.reftype] if change.reftype else [])
    if not found:
        return "no reference-file changes"
    return "; ".join(f"{inst}: {', '.join(sorted(types)) or 'context'}" for inst, types in sorted(found.items()))


def atom_feed(activations: Sequence[Any], *, feed_url: str, server_names: dict[str, str], updated: datetime) -> bytes:
    """`activations` are store SeenActivation records, newest first."""
    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed")
    ET.SubElement(feed, f"{{{ATOM}}}title").text = "crdswatch: CRDS context activations"
    ET.SubElement(feed, f"{{{ATOM}}}id").text = feed_url
    ET.SubElement(feed, f"{{{ATOM}}}updated").text = updated.isoformat()
    ET.SubElement(feed, f"{{{ATOM}}}link", rel="self", href=feed_url)
    ET.SubElement(ET.SubElement(feed, f"{{{ATOM}}}author"), f"{{{ATOM}}}name").text = "crdswatch"
    for act in activations:
        if not act.diff:
            continue  # a silent baseline is not news
        server = server_names.get(act.source_key, SourceKey.parse(act.source_key).server_url)
        entry = ET.SubElement(feed, f"{{{ATOM}}}entry")
        ET.SubElement(entry, f"{{{ATOM}}}title").text = (
            f"{act.context} activated" + (f" (previous {act.previous_context})" if act.previous_context else "")
        )
        ET.SubElement(entry, f"{{{ATOM}}}id").text = f"{feed_url}#{act.source_key}|{act.context}|{act.activation_date}"
        ET.SubElement(entry, f"{{{ATOM}}}updated").text = act.activation_date
        ET.SubElement(entry, f"{{{ATOM}}}link", href=f"{server.rstrip('/')}/context_table/{act.context}")
        count = len(record_changes(act.diff))
        ET.SubElement(entry, f"{{{ATOM}}}summary").text = (
            f"{count} changes. {_affected(act.diff)}. {act.description}".strip()
        )
    for element in feed.iter():  # server text: no control characters (not XML 1.0), no bidi tricks
        element.text = clean_line(element.text) if element.text else element.text
        element.attrib = {k: clean_line(v) for k, v in element.attrib.items()}
    body: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return body
