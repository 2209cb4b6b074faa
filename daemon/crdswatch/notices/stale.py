"""Which references recorded in a dataset's header a context would now choose differently (pure)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from crdswatch.contexts.bestref import BestrefError, BoundContext, bestrefs

__all__ = ["StaleReport", "StaleType", "recorded_references", "stale_report"]


@dataclass(frozen=True)
class StaleType:
    reftype: str
    recorded: str
    selected: str | None  # file, "N/A", or None (no match)
    changed_in: tuple[str, ...] = ()  # contexts, after the recorded one, whose activation changed it

    def to_json(self) -> dict[str, Any]:
        return {"reftype": self.reftype, "recorded": self.recorded, "selected": self.selected,
                "changed_in": list(self.changed_in)}


@dataclass(frozen=True)
class StaleReport:
    file: str
    context: str
    recorded_context: str | None
    stale: tuple[StaleType, ...] = ()
    error: str | None = None
    checked: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "context": self.context, "recorded_context": self.recorded_context,
                "checked": list(self.checked), "stale": [s.to_json() for s in self.stale], "error": self.error}


def _base(value: str) -> str:
    """`crds://jwst_miri_dark_0048.fits`, `jref$x1_drk.fits`, `N/A` -> comparable basename."""
    text = value.strip()
    for prefix in ("crds://",):
        if text.lower().startswith(prefix):
            text = text[len(prefix):]
    if "$" in text:
        text = text.split("$", 1)[1]
    text = text.rsplit("/", 1)[-1]
    return "N/A" if text.upper() in ("N/A", "NOT FOUND N/A") else text.lower()


def recorded_references(observatory: str, header: Mapping[str, Any], reftypes: Sequence[str]) -> dict[str, str]:
    """reftype -> the file the header records for it (JWST `R_<TYPE>`, HST `<TYPE>` e.g. DARKFILE)."""
    upper = {str(k).upper(): str(v) for k, v in header.items()}
    out: dict[str, str] = {}
    for reftype in reftypes:
        # JWST FITS files record META.REF_FILE.<TYPE>.NAME as R_<TYPE> (cut to 8 characters
        # unless written as a HIERARCH card); HST as the type's own keyword (DARKFILE, IDCTAB).
        keys = (f"R_{reftype.upper()}", f"R_{reftype.upper()}"[:8]) if observatory == "jwst" else (reftype.upper(),)
        for key in keys:
            if upper.get(key, "").strip():
                out[reftype] = upper[key].strip()
                break
    return out


def stale_report(file: str, header: Mapping[str, Any], context: BoundContext,
                 between: Sequence[str], bind: Callable[[str], BoundContext]) -> StaleReport:
    """Types whose recorded file differs from `context`'s choice; `between` are the contexts
    activated after the recorded one, up to `context`, to say which activation changed each."""
    recorded_ctx = next((str(v) for k, v in header.items() if str(k).upper() == "CRDS_CTX"), None)
    try:
        now = bestrefs(context, header)
    except BestrefError as exc:
        return StaleReport(file, context.name, recorded_ctx, error=str(exc))
    recorded = recorded_references(context.observatory, header, list(now.bestrefs))
    stale: list[StaleType] = []
    for reftype, old in sorted(recorded.items()):
        selected = now.bestrefs.get(reftype)
        if selected is None:
            continue  # no match now: nothing better to recommend, not "stale"
        if _base(old) == _base(selected):
            continue
        stale.append(StaleType(reftype, old, selected, _changed_in(header, reftype, recorded_ctx, between, bind)))
    return StaleReport(file, context.name, recorded_ctx, tuple(stale), checked=tuple(sorted(recorded)))


def _changed_in(header: Mapping[str, Any], reftype: str, recorded_ctx: str | None, between: Sequence[str],
                bind: Callable[[str], BoundContext]) -> tuple[str, ...]:
    if not recorded_ctx or not between:
        return ()
    out: list[str] = []
    previous: str | None = None
    try:
        previous = bestrefs(bind(recorded_ctx), header, [reftype]).bestrefs.get(reftype)
    except BestrefError:
        previous = None
    for name in between:
        try:
            value = bestrefs(bind(name), header, [reftype]).bestrefs.get(reftype)
        except BestrefError:
            continue
        if value != previous:
            out.append(name)
        previous = value
    return tuple(out)
