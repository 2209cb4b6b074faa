"""JSON form of the pipeline records, so a queued notice survives restarts unchanged (pure).

The one owner of the stored shapes: the seen-activation record (`activation_record`, read back by
`stored_activation_diff`, `record_changes`, `record_catalog`), the outbox payload
(`delivery_payload`, `payload_notice_fields`), the stored subscriber (`subscriber_to_json`,
`subscriber_from_json`) and the notice JSON. Nothing else decodes them by hand.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from crdswatch.contexts.names import is_revert
from crdswatch.model import (
    Activation,
    ActivationDiff,
    BridgeNotice,
    Change,
    DiffResult,
    FileInfo,
    Interest,
    Notice,
    SourceKey,
    SubscriberConfig,
)

__all__ = [
    "PAYLOAD_VERSION",
    "activation_diff_from_json",
    "activation_diff_to_json",
    "activation_record",
    "bridge_notice_from_json",
    "bridge_notice_to_json",
    "decode_selection",
    "delivery_payload",
    "encode_selection",
    "narrowed",
    "notice_from_json",
    "notice_to_json",
    "payload_digest",
    "payload_notice_fields",
    "record_catalog",
    "record_changes",
    "selected_diff",
    "stored_activation_diff",
    "subscriber_from_json",
    "subscriber_to_json",
]

_TUPLE_FIELDS = ("match", "parameters")
# Change's fields in order, with their defaults (MISSING for the required ones).
_CHANGE_FIELDS = tuple((f.name, f.default) for f in dataclasses.fields(Change))
_CHANGE_NAMES = frozenset(name for name, _ in _CHANGE_FIELDS)
_CHANGE_REQUIRED = frozenset(name for name, default in _CHANGE_FIELDS if default is dataclasses.MISSING)


def change_from_json(data: dict[str, Any]) -> Change:
    if _CHANGE_REQUIRED.issubset(data) and _CHANGE_NAMES.issuperset(data):
        # What Change(**values) makes, its fields set in their order, without the frozen
        # __init__'s sixteen object.__setattr__ calls: the drain decodes every change of every
        # activation it sends (7,020 for the replayed JWST history; 9 us each that way).
        values = {name: data.get(name, default) for name, default in _CHANGE_FIELDS}
        values["match"], values["parameters"] = tuple(values["match"] or ()), tuple(values["parameters"] or ())
        change = object.__new__(Change)
        change.__dict__.update(values)
        return change
    values = dict(data)  # a field missing or unknown: the TypeError Change(**values) raises
    for name in _TUPLE_FIELDS:
        values[name] = tuple(values.get(name) or ())
    return Change(**values)


def activation_diff_to_json(diff: ActivationDiff) -> dict[str, Any]:
    return {
        "observatory": diff.observatory,
        "server_url": diff.server_url,
        "state": diff.state,
        "activation": dict(diff.activation.__dict__),
        "previous": diff.previous,
        "revert": diff.revert,
        "announcements": list(diff.announcements),
        "changes": [c.to_json() for c in diff.changes],
        "catalog": {name: info.to_json() for name, info in diff.catalog.items()},
    }


def activation_diff_from_json(data: dict[str, Any]) -> ActivationDiff:
    return ActivationDiff(
        observatory=data["observatory"],
        server_url=data["server_url"],
        state=data["state"],
        activation=Activation(**data["activation"]),
        previous=data.get("previous"),
        changes=tuple(change_from_json(c) for c in data.get("changes", ())),
        catalog={name: FileInfo(**info) for name, info in (data.get("catalog") or {}).items()},
        revert=bool(data.get("revert", False)),
        announcements=tuple(data.get("announcements") or ()),
    )


def notice_to_json(notice: Notice) -> dict[str, Any]:
    return {
        "subscriber": notice.subscriber,
        "reason": notice.reason,
        "unsubscribe_url": notice.unsubscribe_url,
        "digest": notice.digest,
        "activations": [activation_diff_to_json(a) for a in notice.activations],
        "interest": notice.interest.to_json() if notice.interest else None,
        "dataset_hits": {name: list(ids) for name, ids in notice.dataset_hits.items()},
        "public_url": notice.public_url,
        "test": notice.test,
    }


def notice_from_json(data: dict[str, Any]) -> Notice:
    return Notice(
        subscriber=data["subscriber"],
        activations=tuple(activation_diff_from_json(a) for a in data["activations"]),
        reason=data.get("reason", ""),
        unsubscribe_url=data.get("unsubscribe_url"),
        digest=data.get("digest", "immediate"),
        interest=Interest.from_json(data["interest"]) if data.get("interest") else None,
        dataset_hits={str(k): tuple(str(i) for i in v) for k, v in (data.get("dataset_hits") or {}).items()},
        public_url=data.get("public_url"),
        test=bool(data.get("test", False)),
    )


# ---------------------------------------------------------------- compact outbox rows
#
# An outbox row used to hold a full copy of its notice (71 KB for jwst_0541, 444 KB for
# jwst_0160), once per subscriber. The seen activation already keeps the diff and the catalog,
# so a row now carries only what is its own: which of the activation's changes this subscriber's
# filters selected (index ranges), the reason line and the digest kind.

PAYLOAD_VERSION = 2


def encode_selection(indices: Sequence[int]) -> str:
    """`[0, 1, 2, 5, 7, 8]` -> `"0-2,5,7-8"`: sorted, deduplicated, ranges collapsed."""
    out: list[str] = []
    ordered = sorted(set(indices))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(out)


def decode_selection(text: str) -> list[int]:
    """The inverse of `encode_selection`; raises ValueError on anything else."""
    out: list[int] = []
    for part in filter(None, text.split(",")):
        low, _, high = part.partition("-")
        first, last = int(low), int(high or low)
        if first < 0 or last < first:
            raise ValueError(f"bad selection range {part!r}")
        out.extend(range(first, last + 1))
    return out


def delivery_payload(
    selection: Sequence[int], reason: str, digest: str, interest: Interest | None = None,
    dataset_hits: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """The stored form of one row; `interest` (the filters, for the "why" lines) and dataset hits
    only when there are any."""
    payload: dict[str, Any] = {"v": PAYLOAD_VERSION, "sel": encode_selection(selection), "reason": reason,
                               "digest": digest}
    if interest is not None:
        payload["interest"] = interest.to_json()
    if dataset_hits:
        payload["dataset_hits"] = {name: list(ids) for name, ids in dataset_hits.items()}
    return payload


def payload_notice_fields(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The Notice fields of a compact row besides its activations: reason, digest, interest, hits."""
    return {
        "reason": str(payload.get("reason", "")),
        "digest": payload_digest(payload),
        "interest": Interest.from_json(payload["interest"]) if payload.get("interest") else None,
        "dataset_hits": {str(k): tuple(str(i) for i in v) for k, v in (payload.get("dataset_hits") or {}).items()},
    }


def payload_digest(payload: Mapping[str, Any]) -> str:
    """The digest kind of a stored row, either shape."""
    if "notice" in payload:
        return str(payload["notice"].get("digest", "immediate"))
    return str(payload.get("digest", "immediate"))


# ---------------------------------------------------------------- seen activations
#
# The `diff` column of a seen activation: the poll's DiffResult (old, new, changes) with the catalog
# facts, the revert flag and the announcements the bridge found; None for a silent baseline. The
# outbox rows point at it and every notice is rendered from it when sent.


def activation_record(result: DiffResult, diff: ActivationDiff) -> dict[str, Any]:
    """The stored record of one processed activation (`diff`: the one the poll planned notices from)."""
    return {**result.to_json(), "catalog": {name: info.to_json() for name, info in diff.catalog.items()},
            "revert": diff.revert, **({"announcements": list(diff.announcements)} if diff.announcements else {})}


def record_changes(record: Mapping[str, Any] | None) -> tuple[Change, ...]:
    """The changes of a seen activation's record, in stored order (selections index them); none for a baseline."""
    return tuple(change_from_json(c) for c in (record or {}).get("changes") or ())


def record_catalog(record: Mapping[str, Any] | None) -> dict[str, FileInfo]:
    """The catalog facts recorded with the activation (the server is not asked again)."""
    return {name: FileInfo(**info) for name, info in ((record or {}).get("catalog") or {}).items()}


def stored_activation_diff(
    source_key: str, activation: Activation, previous: str | None, record: Mapping[str, Any] | None
) -> ActivationDiff:
    """The whole ActivationDiff of a seen activation, from its row (source key `url|obs|state`).

    A baseline (no record) has no changes; a record without the revert flag is judged by serials.
    """
    key = SourceKey.parse(source_key)
    record = record or {}
    revert = record["revert"] if "revert" in record else is_revert(previous, activation.context)
    return ActivationDiff(
        observatory=key.observatory,
        server_url=key.server_url,
        state=key.state,
        activation=activation,
        previous=previous,
        changes=record_changes(record),
        catalog=record_catalog(record),
        revert=bool(revert),
        announcements=tuple(record.get("announcements") or ()),
    )


def narrowed(diff: ActivationDiff, selected: Sequence[Change]) -> ActivationDiff:
    """The activation as one subscriber sees it: only the selected changes and their files' facts."""
    files = {c.new_file for c in selected} | {c.old_file for c in selected}
    catalog = {name: info for name, info in diff.catalog.items() if name in files}
    return replace(diff, changes=tuple(selected), catalog=catalog)


def selected_diff(diff: ActivationDiff, payload: Mapping[str, Any]) -> ActivationDiff:
    """What a compact row's subscriber is told about `diff`; ValueError when the row does not fit it."""
    indices = decode_selection(str(payload["sel"]))
    if indices and indices[-1] >= len(diff.changes):
        raise ValueError(f"selection {payload['sel']!r} beyond the {len(diff.changes)} stored changes")
    return narrowed(diff, [diff.changes[i] for i in indices])


# ---------------------------------------------------------------- stored subscribers
#
# The `config` column of a subscriber row. Its keys are the config file's [[subscribers]] keys
# (without the name, secrets in plain text), then the ones links, lists and the manage page add.
# Rows keep every settings key (as `SubscriberSettings.model_dump` wrote them); the state keys
# only when set. Old rows decode by the same fallbacks the readers always used: a missing or
# empty key is its default, a non-table `own` or `datasets` entry is ignored, unknown keys ride
# along in `extra`.

_STATE_KEYS = {"origin": "origin", "list": "list_name", "own": "own", "delivery_disabled": "delivery_disabled",
               "left": "left", "unsubscribed": "unsubscribed"}
_SETTINGS_KEYS = ("observatories", "instruments", "reftypes", "change_levels", "pedigrees", "parameters", "states",
                  "digest", "digest_hour", "digest_weekday", "timezone", "programs", "email", "datasets",
                  "slack_webhook", "webhook_url", "webhook_secret")


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(map(str, value or ()))


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def subscriber_from_json(data: Mapping[str, Any]) -> SubscriberConfig:
    """The stored subscriber of a `subscribers.config` value, any shape it was written in.

    Only the keys present are read (the rest keep SubscriberConfig's defaults): a drain reads
    every recipient of a fan-out, and most of the 23 keys are absent from most rows."""
    fields: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in data.items():
        reader = _READERS.get(key)
        if reader is None:
            extra[key] = value
        else:
            fields[reader[0]] = reader[1](value)
    return SubscriberConfig(**fields, extra=extra)


def _parameters(value: Any) -> dict[str, tuple[str, ...]]:
    params = value or {}
    return {str(k): _strings(vs) for k, vs in params.items()} if isinstance(params, Mapping) else {}


# Stored key -> (SubscriberConfig field, how its value is read); every key of _SETTINGS_KEYS and
# _STATE_KEYS, read as they always were (None or empty means the default).
_READERS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    **{key: (key, _strings) for key in ("email", "observatories", "instruments", "reftypes", "change_levels",
                                         "pedigrees", "programs", "unsubscribed")},
    **{key: (key, _text) for key in ("slack_webhook", "webhook_url", "webhook_secret", "origin")},
    "parameters": ("parameters", _parameters),
    "states": ("states", lambda v: _strings(v) or ("latest",)),
    "digest": ("digest", lambda v: str(v or "immediate")),
    "digest_hour": ("digest_hour", lambda v: 8 if v is None else int(v)),
    "digest_weekday": ("digest_weekday", lambda v: str(v or "mon")),
    "timezone": ("timezone", lambda v: str(v or "UTC")),
    "datasets": ("datasets", lambda v: tuple(dict(d) for d in v or () if isinstance(d, Mapping))),
    "list": ("list_name", lambda v: _text(v) if v else None),
    "own": ("own", lambda v: dict(v) if isinstance(v, Mapping) else {}),
    "delivery_disabled": ("delivery_disabled", bool),
    "left": ("left", bool),
}
assert set(_READERS) == set(_SETTINGS_KEYS) | set(_STATE_KEYS)


def subscriber_to_json(sub: SubscriberConfig) -> dict[str, Any]:
    """The stored form (JSON-ready) of a subscriber; `subscriber_from_json` reads it back equal."""
    out: dict[str, Any] = {}
    for key in _SETTINGS_KEYS:
        value = getattr(sub, key)
        if key == "parameters":
            value = {k: list(vs) for k, vs in value.items()}
        elif key == "datasets":
            value = [dict(d) for d in value]
        elif isinstance(value, tuple):
            value = list(value)
        out[key] = value
    for key, attr in _STATE_KEYS.items():
        value = getattr(sub, attr)
        if value:
            out[key] = list(value) if isinstance(value, tuple) else dict(value) if isinstance(value, Mapping) else value
    return {**out, **{k: v for k, v in sub.extra.items() if k not in out}}


def bridge_notice_to_json(notice: BridgeNotice) -> dict[str, Any]:
    return dict(notice.__dict__, lines=list(notice.lines))


def bridge_notice_from_json(data: dict[str, Any]) -> BridgeNotice:
    return BridgeNotice(**{**data, "lines": tuple(data.get("lines") or ())})
