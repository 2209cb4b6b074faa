"""Dataset headers drawn from real rmaps, for comparing bestrefs with crds.getrecommendations.

Each header starts from one leaf of one rmap (its Match tuple and a USEAFTER date: exactly on
the boundary, just before it, or later), fills the instrument's other parameters with values
seen in its rmaps, and is then sometimes spoiled: a value that matches nothing, an `N/A`, a
missing date. JWST headers sometimes use FITS keywords instead of data-model paths.
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Iterator, Mapping
from typing import Any

from crdswatch.contexts.crdsvalues import esoteric_key
from crdswatch.contexts.mappings import Mapping as CrdsMapping
from crdswatch.contexts.mappings import Selector
from crdswatch.contexts.observatories import JWST_FITS_TO_PATH

__all__ = ["headers_for_context"]

_PATH_TO_FITS = {path: fits for fits, path in JWST_FITS_TO_PATH.items()}


def _leaves(selector: Selector, path: tuple[tuple[tuple[str, ...], Any], ...] = ()) -> Iterator[Any]:
    for key, choice in selector.items:
        step = path + ((selector.parameters, (selector.kind, key)),)
        if isinstance(choice, Selector):
            yield from _leaves(choice, step)
        else:
            yield step


def _values(selector: Selector, pool: dict[str, set[str]]) -> None:
    for key, choice in selector.items:
        if selector.kind == "Match":
            fields = key if isinstance(key, tuple) else (key,)
            for name, field in zip(selector.parameters, fields):
                for value in _concrete(field):
                    pool.setdefault(name, set()).add(value)
        if isinstance(choice, Selector):
            _values(choice, pool)


def _concrete(field: Any) -> list[str]:
    if isinstance(field, tuple):
        return [str(f) for f in field]
    text = str(field)
    if esoteric_key(text) or text in ("*", "ANY", "N/A"):
        return []
    return [part.strip() for part in text.split("|") if part.strip() and "*" not in part]


def _date_variants(key: str, rng: random.Random) -> str:
    try:
        moment = datetime.datetime.fromisoformat(key.replace("T", " "))
    except ValueError:
        return key
    delta = rng.choice([datetime.timedelta(0), datetime.timedelta(seconds=-1), datetime.timedelta(days=45),
                        datetime.timedelta(days=-400)])
    return (moment + delta).strftime("%Y-%m-%d %H:%M:%S")


def _fill(header: dict[str, str], params: tuple[str, ...], kind: str, key: Any, rng: random.Random,
          pool: Mapping[str, set[str]]) -> None:
    if kind in ("UseAfter", "ClosestTime"):
        moment = _date_variants(str(key), rng)
        parts = moment.split(" ", 1)
        if len(params) == 2:
            header[params[0]], header[params[1]] = parts[0], parts[1] if len(parts) > 1 else "00:00:00"
        elif params:
            header[params[0]] = moment
        return
    if kind != "Match":
        return
    fields = key if isinstance(key, tuple) else (key,)
    for name, field in zip(params, fields):
        options = _concrete(field)
        if options:
            header[name] = rng.choice(options)
        elif str(field) in ("*", "ANY", "N/A") and pool.get(name):
            header[name] = rng.choice(sorted(pool[name]))


def headers_for_context(library: Mapping[str, CrdsMapping], context: str, rng: random.Random,
                        per_rmap: int = 2, instruments: set[str] | None = None) -> Iterator[dict[str, str]]:
    pmap = library[context]
    instrument_key = str(pmap.parkey[0])
    for instrument, imap_name in sorted(pmap.selections.items()):
        if instruments is not None and instrument not in instruments:
            continue
        imap = library[imap_name]
        rmaps = [library[name] for name in imap.selections.values() if name.endswith(".rmap")]
        pool: dict[str, set[str]] = {}
        for rmap in rmaps:
            if rmap.selector is not None:
                _values(rmap.selector, pool)
        for rmap in rmaps:
            if rmap.selector is None:
                continue
            leaves = list(_leaves(rmap.selector))
            for path in rng.sample(leaves, min(per_rmap, len(leaves))):
                header = {instrument_key: instrument.upper()}
                for name, values in pool.items():  # plausible values for every other parameter
                    if rng.random() < 0.7:
                        header[name] = rng.choice(sorted(values))
                for params, (kind, key) in path:
                    _fill(header, params, kind, key, rng, pool)
                yield _spoil(header, rng, instrument_key, pmap.observatory)


def _spoil(header: dict[str, str], rng: random.Random, instrument_key: str, observatory: str) -> dict[str, str]:
    names = [k for k in header if k != instrument_key]
    roll = rng.random()
    if names and roll < 0.12:
        header[rng.choice(names)] = "BOGUS_VALUE"
    elif names and roll < 0.2:
        header[rng.choice(names)] = "N/A"
    elif names and roll < 0.25:
        del header[rng.choice(names)]
    elif names and roll < 0.3:
        header[rng.choice(names)] = "ANY"
    if observatory == "jwst" and rng.random() < 0.3:
        return {_PATH_TO_FITS.get(k, k): v for k, v in header.items()}
    return header
