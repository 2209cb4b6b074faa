"""Dataset headers for best-reference selection: from FITS files (the [fits] extra) or KEY=VALUE pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crdswatch.errors import DatasetHeaderError

__all__ = ["DatasetHeaderError", "parse_params", "read_fits_dataset_header"]

_MAX_CARDS = 20_000  # a dataset's primary + SCI headers hold a few hundred; refuse absurd ones


def parse_params(pairs: list[str]) -> dict[str, str]:
    """`["EXP_TYPE=MIR_MRS", "DATE-OBS=2024-03-01"]` -> a header; keys keep their case."""
    header: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise DatasetHeaderError(f"--param {pair!r}: expected KEY=VALUE, e.g. EXP_TYPE=MIR_MRS")
        header[key.strip()] = value.strip()
    return header


def read_fits_dataset_header(path: Path) -> dict[str, Any]:
    """Primary header, then the first extension's keywords the primary lacks (as crds merges them)."""
    try:
        from astropy.io import fits
    except ImportError:
        raise DatasetHeaderError("reading FITS files needs the [fits] extra: pip install 'crdswatch[fits]'") from None
    header: dict[str, Any] = {}
    try:
        with fits.open(path, lazy_load_hdus=True, memmap=True) as hdus:
            for index in range(min(2, len(hdus))):
                cards = hdus[index].header
                if len(cards) > _MAX_CARDS:
                    raise DatasetHeaderError(f"{path}: HDU {index} has {len(cards)} cards (more than {_MAX_CARDS})")
                for key, value in cards.items():
                    if key and key not in header and key not in ("COMMENT", "HISTORY")  \
                            and isinstance(value, (str, int, float, bool)):
                        header[key] = value
    except FileNotFoundError:
        raise DatasetHeaderError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise DatasetHeaderError(f"{path}: not a readable FITS file ({exc})") from None
    return header
