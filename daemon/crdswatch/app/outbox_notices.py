"""Claimed outbox rows become notices: digests grouped, each activation decoded once (pure but the load).

The drain (app.drain) hands its claimed rows here and renders what comes back; rows carry only an
index list into the activation stored once (see notices.codec), so each distinct selection is
built once and rows with the same selection share one `activations` tuple.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import replace

from crdswatch.model import Activation, ActivationDiff, BridgeNotice, Notice
from crdswatch.notices.codec import (
    bridge_notice_from_json,
    notice_from_json,
    payload_digest,
    payload_notice_fields,
    selected_diff,
    stored_activation_diff,
)
from crdswatch.store import Delivery, SeenActivation, Store

__all__ = ["NoticeBuilder", "group_key", "group_rows", "merge_notices"]

_CACHE_LIMIT = 512  # decoded activations and selections kept between batches


def group_rows(rows: Sequence[Delivery]) -> list[list[Delivery]]:
    """Rows for the same subscriber and channel claimed together are one message (a digest)."""
    groups: dict[tuple[str, str], list[Delivery]] = {}
    for row in sorted(rows, key=lambda r: (r.created_at, r.id)):
        digest = payload_digest(row.payload) != "immediate"
        key = (row.subscriber, row.channel) if digest else (f"#{row.id}", row.channel)
        groups.setdefault(key, []).append(row)
    return list(groups.values())


def merge_notices(notices: Sequence[Notice]) -> Notice:
    """A digest: every activation of the notices, oldest first."""
    first = notices[0]
    activations = sorted((a for n in notices for a in n.activations), key=lambda a: a.activation.date)
    hits = {name: ids for n in notices for name, ids in n.dataset_hits.items()}
    return replace(first, activations=tuple(activations), dataset_hits=hits)


class NoticeBuilder:
    """Notices from claimed rows: each activation decoded once, each distinct selection built once.

    Rows with the same selection get the very same `activations` tuple, which is what lets the
    e-mail renderer reuse one rendering for all of them.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._diffs: dict[int, ActivationDiff] = {}
        self._shapes: dict[tuple[tuple[int, str], ...], tuple[ActivationDiff, ...]] = {}

    async def load(self, rows: Sequence[Delivery]) -> None:
        """Read and decode, off the event loop, the activations these rows refer to."""
        wanted = {r.activation_id for r in rows
                  if "notice" not in r.payload and "bridge" not in r.payload and r.activation_id is not None}
        missing = sorted(i for i in wanted if i not in self._diffs)
        if not missing:
            return
        if len(self._diffs) + len(missing) > _CACHE_LIMIT:
            self._diffs.clear()
            self._shapes.clear()
        seen = await self.store.aio.get_activations(missing)  # off the loop, bounded
        self._diffs.update(await asyncio.to_thread(self._decode, seen))

    @staticmethod
    def _decode(records: Mapping[int, SeenActivation]) -> dict[int, ActivationDiff]:
        out: dict[int, ActivationDiff] = {}
        for i, seen in records.items():
            activation = Activation(seen.activation_date, seen.context, seen.description)
            out[i] = stored_activation_diff(seen.source_key, activation, seen.previous_context, seen.diff or {})
        return out

    def notice(self, group: Sequence[Delivery]) -> Notice | BridgeNotice:
        """The notice of one group of rows (one row, or a digest); KeyError/ValueError if unreadable."""
        if "bridge" in group[0].payload:  # an upstream post or MAST summary: always one row
            return bridge_notice_from_json(group[0].payload["bridge"])
        if any("notice" in r.payload for r in group):  # rows queued before compact payloads
            return merge_notices([notice_from_json(r.payload["notice"]) for r in group])
        key = tuple((int(r.activation_id or -1), str(r.payload["sel"])) for r in group)
        shape = self._shapes.get(key)
        if shape is None:
            parts = [selected_diff(self._diffs[r.activation_id or -1], r.payload) for r in group]
            shape = self._shapes[key] = tuple(sorted(parts, key=lambda a: a.activation.date))
        fields = payload_notice_fields(group[0].payload)
        if len(group) > 1:
            fields["dataset_hits"] = {k: v for r in group for k, v in payload_notice_fields(r.payload)["dataset_hits"].items()}
        return Notice(group[0].subscriber, shape, **fields)


def group_key(rows: Sequence[Delivery]) -> str:
    """The idempotency key of one message: its row's, or for a digest one derived from all of its rows'."""
    if len(rows) == 1:
        return rows[0].idempotency_key
    joined = "+".join(sorted(r.idempotency_key for r in rows))
    return hashlib.sha256(joined.encode()).hexdigest()
