"""Why a subscriber got each section of a notice: which of its filters selected it (pure)."""

from __future__ import annotations

from collections.abc import Mapping

from crdswatch.model import Interest
from crdswatch.notices.match import rule_value_matches
from crdswatch.notices.summary import Section

__all__ = ["section_why"]

_EVERY = frozenset({"N/A", "ANY", "*", ""})
_SHOWN = 2  # matching rule values named before "and N more"
_LISTED = 8  # alternatives of one rule value listed in full
_NAMES = {
    "nirspec": "NIRSpec", "nircam": "NIRCam", "niriss": "NIRISS", "miri": "MIRI", "fgs": "FGS",
}


def _inst(name: str) -> str:
    return _NAMES.get(name.lower(), name.upper())


def section_why(section: Section, interest: Interest | None, dataset_hits: Mapping[str, tuple[str, ...]],
                observatory: str) -> str:
    """`you follow NIRSpec; rule applies to every EXP_TYPE`; "" when the filters are not known."""
    if interest is None:
        return ""
    parts = [_follow(section, interest, observatory)]
    parts += [_parameter(section, name, wanted) for name, wanted in interest.parameters]
    parts += _catalog(section, interest)
    for file in dict.fromkeys(e.file for e in section.events) if dataset_hits else ():
        for dataset in dataset_hits.get(file, ()):
            parts.append(f"your dataset {dataset} selects {file}")
    return "; ".join(p for p in parts if p)


def _follow(section: Section, interest: Interest, observatory: str) -> str:
    inst, reftype = _inst(section.instrument), section.reftype.upper()
    if interest.instruments and interest.reftypes:
        return f"you follow {inst} {reftype}".rstrip()
    if interest.instruments:
        return f"you follow {inst}"
    if interest.reftypes:
        return f"you follow {reftype} (all instruments)"
    if interest.observatories:
        return f"you follow all of {observatory.upper()}"
    return "you follow everything" if not (interest.parameters or interest.datasets) else ""


def _parameter(section: Section, name: str, wanted: tuple[str, ...]) -> str:
    values = [e.modes[name] for e in section.events if name in e.modes]
    if not values:
        if not section.events:
            return f"a change to the whole {section.reftype.upper() or 'mapping'} (not selected by {name})"
        return f"its rules do not select on {name} (they apply to every {name})"
    real = dict.fromkeys(v for v in values if v.strip().upper() not in _EVERY)
    if not real:
        return f"rule applies to every {name}"
    hits = [v for v in real if any(rule_value_matches(v, w) for w in wanted)]
    shown = ", ".join(_short(v) for v in hits[:_SHOWN]) + (f" and {len(hits) - _SHOWN} more" if len(hits) > _SHOWN else "")
    every = " (some rules apply to every value)" if len(real) < len(dict.fromkeys(values)) else ""
    return f"{name} {'|'.join(wanted)} matches rule value {shown}{every}" if hits else \
        f"rule applies to every {name}"


def _short(value: str) -> str:
    """A rule value of many alternatives, counted rather than listed (the table shows it)."""
    count = value.count("|") + 1
    return value if count <= _LISTED else f"{'|'.join(value.split('|')[:3])}|… ({count} alternatives)"


def _catalog(section: Section, interest: Interest) -> list[str]:
    out: list[str] = []
    if not (interest.change_levels or interest.pedigrees):
        return out  # the common case: neither filter, nothing to look up
    infos = [e.info for e in section.events if not e.not_applicable]
    if interest.change_levels:
        levels = sorted({i.change_level.upper() for i in infos if i and i.change_level})
        out.append(f"change level {', '.join(levels)}" if levels else "change level not on record (let through)")
    if interest.pedigrees:
        kinds = sorted({i.pedigree.split()[0].upper() for i in infos if i and i.pedigree and i.pedigree.split()})
        out.append(f"pedigree {', '.join(kinds)}" if kinds else "pedigree not on record (let through)")
    return out
