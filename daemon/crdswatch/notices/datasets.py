"""Dataset subscriptions (pure): does a new context change the references *my* exposures get?

A dataset is a parameter set (FITS keywords or JWST data-model paths, as a header has them).
Per activation, its best references are computed under the old and the new context exactly as
crds would (`contexts.bestref`); the subscriber hears only about reference types whose
selected file changes, or becomes or stops being N/A.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from crdswatch.contexts.bestref import BestrefError, BoundContext, bestrefs

__all__ = ["Dataset", "SelectionChange", "dataset_from_config", "dataset_label", "selection_changes"]

# The issue's own spelling: `instrument = "nirspec"` in a dataset table means INSTRUME.
_ALIASES = {"INSTRUMENT": "INSTRUME"}
_LABEL_KEYS = (
    ("DETECTOR", "META.INSTRUMENT.DETECTOR"),
    ("GRATING", "META.INSTRUMENT.GRATING"),
    ("FILTER", "META.INSTRUMENT.FILTER"),
    ("EXP_TYPE", "META.EXPOSURE.TYPE"),
)


@dataclass(frozen=True)
class Dataset:
    id: str
    header: Mapping[str, Any]

    @property
    def instrument(self) -> str:
        for key, value in self.header.items():
            if key.upper() in ("INSTRUME", "META.INSTRUMENT.NAME"):
                return str(value).lower()
        return ""


@dataclass(frozen=True)
class SelectionChange:
    dataset: str
    instrument: str
    reftype: str
    old: str | None  # file, "N/A", or None (no match)
    new: str | None

    def line(self) -> str:
        """`NRS1 G395H/F290LP NRS_IFU: DARK jwst_nirspec_dark_0123.fits → jwst_nirspec_dark_0150.fits`"""
        return f"{self.dataset}: {self.reftype.upper()} {self.old or 'no match'} → {self.new or 'no match'}"


def dataset_label(header: Mapping[str, Any]) -> str:
    """A short readable name from the header: detector, grating/filter and exposure type."""
    upper = {k.upper(): str(v) for k, v in header.items()}

    def get(names: tuple[str, str]) -> str:
        return upper.get(names[0]) or upper.get(names[1]) or ""

    detector, grating, filt, exp_type = (get(k) for k in _LABEL_KEYS)
    optics = "/".join(v for v in (grating, filt) if v)
    parts = [p for p in (detector, optics, exp_type) if p]
    return " ".join(parts) or (upper.get("INSTRUME") or upper.get("META.INSTRUMENT.NAME") or "dataset")


def dataset_from_config(item: Mapping[str, Any], header: Mapping[str, Any] | None = None) -> Dataset:
    """A `[[subscribers.datasets]]` table; `header` is the one read from its `fits` file, if any."""
    params: dict[str, Any] = dict(header or {})
    for key, value in item.items():
        if key in ("id", "fits"):
            continue
        params[_ALIASES.get(key.upper(), key)] = value
    label = str(item.get("id") or dataset_label(params))
    return Dataset(label, params)


def selection_changes(old: BoundContext | None, new: BoundContext, datasets: Iterable[Dataset]) -> list[SelectionChange]:
    """Every (dataset, reference type) whose selection differs between `old` and `new`.

    A type that fails to match under both contexts is no news; a dataset the context cannot
    answer for at all (unknown instrument) is skipped.
    """
    out: list[SelectionChange] = []
    for dataset in datasets:
        try:
            after = bestrefs(new, dataset.header)
            before = bestrefs(old, dataset.header) if old is not None else None
        except BestrefError:
            continue
        old_refs = before.bestrefs if before is not None else {}
        for reftype in sorted(set(after.bestrefs) | set(old_refs)):
            was, now = old_refs.get(reftype), after.bestrefs.get(reftype)
            if was != now:
                out.append(SelectionChange(dataset.id, after.instrument, reftype, was, now))
    return out
