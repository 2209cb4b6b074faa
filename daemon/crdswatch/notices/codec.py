"""JSON form of the pipeline records, so a queued notice survives restarts unchanged (pure)."""

from __future__ import annotations

from typing import Any

from crdswatch.model import Activation, ActivationDiff, Change, FileInfo, Interest, Notice

__all__ = ["activation_diff_from_json", "activation_diff_to_json", "notice_from_json", "notice_to_json"]

_TUPLE_FIELDS = ("match", "parameters")


def change_from_json(data: dict[str, Any]) -> Change:
    values = dict(data)
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
