"""Small pieces every renderer shares: names, safe text, server links (pure)."""

from __future__ import annotations

from crdswatch.render.clean import clean_text

__all__ = ["STATES", "WIDTH", "clean_text", "context_url", "file_url", "instrument_name", "plural"]

_INSTRUMENTS = {
    "nirspec": "NIRSpec", "nircam": "NIRCam", "niriss": "NIRISS", "miri": "MIRI", "fgs": "FGS",
    "acs": "ACS", "wfc3": "WFC3", "cos": "COS", "stis": "STIS", "nicmos": "NICMOS", "wfpc2": "WFPC2",
    "wfi": "WFI",
}
STATES = {"latest": "operational", "operational": "operational", "build": "build", "edit": "edit"}
WIDTH = 78  # plain-text lines: what every mail client and terminal shows unwrapped


def instrument_name(instrument: str) -> str:
    return _INSTRUMENTS.get(instrument.lower(), instrument.upper()) if instrument else "(context)"


def context_url(server: str, context: str) -> str:
    return f"{server.rstrip('/')}/context_table/{context}"


def file_url(server: str, name: str) -> str:
    return f"{server.rstrip('/')}/browse/{name}"


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else many or word + 's'}"
