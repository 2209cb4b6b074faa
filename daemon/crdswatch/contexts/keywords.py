"""Match parameter names as people know them: JWST data-model paths -> FITS keywords."""

from __future__ import annotations

__all__ = ["keyword"]

# Astronomers filter and read by FITS keyword (EXP_TYPE, SUBARRAY), while JWST rmaps name the
# data-model path (META.EXPOSURE.TYPE, META.SUBARRAY.NAME). HST/Roman rmaps already use keywords.
_JWST_KEYWORDS = {
    "META.EXPOSURE.READPATT": "READPATT",
    "META.EXPOSURE.TYPE": "EXP_TYPE",
    "META.INSTRUMENT.EXP_TYPE": "EXP_TYPE",
    "META.INSTRUMENT.NAME": "INSTRUME",
    "META.INSTRUMENT.CORONAGRAPH": "CORONMSK",
    "META.SUBARRAY.NAME": "SUBARRAY",
    "META.SUBARRAY.XSTART": "SUBSTRT1",
    "META.SUBARRAY.YSTART": "SUBSTRT2",
    "META.SUBARRAY.XSIZE": "SUBSIZE1",
    "META.SUBARRAY.YSIZE": "SUBSIZE2",
    "META.OBSERVATION.DATE": "DATE-OBS",
    "META.OBSERVATION.TIME": "TIME-OBS",
    "META.CALIBRATION_SOFTWARE_VERSION": "CAL_VER",
}


def keyword(parameter: str) -> str:
    """`META.SUBARRAY.NAME` -> `SUBARRAY`; unknown paths keep their last component."""
    upper = parameter.upper()
    return _JWST_KEYWORDS.get(upper) or upper.rsplit(".", 1)[-1]
