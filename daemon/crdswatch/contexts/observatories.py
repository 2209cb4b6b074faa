"""What crds does differently per observatory when it selects references (crds.hst, crds.jwst).

- JWST headers may use FITS keywords; crds maps them to data-model paths (`EXP_TYPE` ->
  `META.EXPOSURE.TYPE`) with the datamodels schema. The table below is that mapping for every
  keyword a JWST rmap selects on (generated from the schema; see `tests/test_bestref_oracle.py`).
- JWST rmaps also need `META.VISIT.TSOVISIT` and `META.INSTRUMENT.LAMP_STATE`.
- HST: "do not reprocess" datasets get N/A instead of a failed match; a few rmaps name header
  hooks (ACS and WFC3 BIASFILE, WFPC2 FLATFILE) that rewrite the header before or after a
  first failed lookup. They are ported here as plain functions, registered by crds' hook names.
"""

from __future__ import annotations

from collections.abc import Callable

from crdswatch.contexts.crdsvalues import condition_value, reformat_date

__all__ = ["HOOKS", "JWST_EXTRA_KEYS", "JWST_FITS_TO_PATH", "Hook", "dnr_check", "fits_to_parkeys"]

Hook = Callable[[dict[str, str]], dict[str, str] | None]

JWST_FITS_TO_PATH = {
    "BAND": "META.INSTRUMENT.BAND",
    "CAL_VER": "META.CALIBRATION_SOFTWARE_VERSION",
    "CHANNEL": "META.INSTRUMENT.CHANNEL",
    "CORONMSK": "META.INSTRUMENT.CORONAGRAPH",
    "DATE-OBS": "META.OBSERVATION.DATE",
    "DETECTOR": "META.INSTRUMENT.DETECTOR",
    "EXP_TYPE": "META.EXPOSURE.TYPE",
    "FILTER": "META.INSTRUMENT.FILTER",
    "GRATING": "META.INSTRUMENT.GRATING",
    "INSTRUME": "META.INSTRUMENT.NAME",
    "LAMP": "META.INSTRUMENT.LAMP_STATE",
    "MODULE": "META.INSTRUMENT.MODULE",
    "PUPIL": "META.INSTRUMENT.PUPIL",
    "READPATT": "META.EXPOSURE.READPATT",
    "SUBARRAY": "META.SUBARRAY.NAME",
    "SUBSIZE1": "META.SUBARRAY.XSIZE",
    "SUBSIZE2": "META.SUBARRAY.YSIZE",
    "SUBSTRT1": "META.SUBARRAY.XSTART",
    "SUBSTRT2": "META.SUBARRAY.YSTART",
    "TIME-OBS": "META.OBSERVATION.TIME",
    "TSOVISIT": "META.VISIT.TSOVISIT",
}
JWST_EXTRA_KEYS = ("META.VISIT.TSOVISIT", "META.INSTRUMENT.LAMP_STATE")


def fits_to_parkeys(observatory: str, header: dict[str, str]) -> dict[str, str]:
    """Header (upper-case keys) in the vocabulary the observatory's rmaps select on."""
    if observatory != "jwst":
        return dict(header)
    out: dict[str, str] = {}
    for key, value in header.items():
        path = key if key.lower().startswith("meta.") else JWST_FITS_TO_PATH.get(key, key)
        out[path.upper()] = value
    return out


def dnr_check(observatory: str, header: dict[str, str]) -> bool:
    """HST 'do not reprocess' datasets (WFC at gain 0.5/1.4): no match becomes N/A."""
    if observatory != "hst":
        return False
    try:
        return header["DETECTOR"] == "WFC" and float(header["CCDGAIN"]) in (0.5, 1.4)
    except (KeyError, ValueError):
        return False


# --- HST hooks (crds.hst.acs_v2, crds.hst.wfc3, crds.hst.wfpc2) ---------------------------------

_ACS_HALF_CHIP_COLS = 2048
_SM4 = reformat_date("2009-05-14 00:00:00.000000")


def _obs_time(header: dict[str, str]) -> str:
    return reformat_date(header["DATE-OBS"] + " " + header["TIME-OBS"])


def precondition_acs_biasfile_v2(header_in: dict[str, str]) -> dict[str, str]:
    header = dict(header_in)
    if _obs_time(header) < _SM4:
        header["APERTURE"] = "N/A"
    try:
        naxis1 = int(float(header["NAXIS1"]))
    except ValueError:
        pass
    else:
        header["NAXIS1"] = condition_value(str(naxis1))
        if _obs_time(header) < _SM4 and naxis1 > _ACS_HALF_CHIP_COLS:
            if header["CCDAMP"] in ("A", "D"):
                header["CCDAMP"] = "AD"
            elif header["CCDAMP"] in ("B", "C"):
                header["CCDAMP"] = "BC"
    if header["DETECTOR"] == "WFC" and header["XCORNER"] == "0.0" and header["YCORNER"] == "0.0":
        try:
            naxis2 = int(float(header["NAXIS2"])) / 2
        except ValueError:
            pass
        else:
            header["NAXIS2"] = condition_value(str(naxis2))
    return header


def fallback_acs_biasfile_v2(header_in: dict[str, str]) -> dict[str, str]:
    header = precondition_acs_biasfile_v2(header_in)
    if header["DETECTOR"] == "WFC":
        header.update(NAXIS1="4144.0", NAXIS2="2068.0", LTV1="24.0", LTV2="0.0")
    else:
        header.update(NAXIS1="1062.0", NAXIS2="1044.0", LTV1="19.0")
        header["LTV2"] = "0.0" if header["CCDAMP"] in ("C", "D") else "20.0"
    return header


def precondition_wfc3_biasfile_v1(header_in: dict[str, str]) -> dict[str, str]:
    header = dict(header_in)
    if header["SUBARRAY"] == "T" and "SUB" not in header["APERTURE"]:
        header["APERTURE"] = "N/A"
    return header


def fallback_wfpc2_flatfile_v1(header: dict[str, str]) -> dict[str, str]:
    # crds swaps the filters in the header it was given (the conditioned dataset header).
    header["FILTER1"], header["FILTER2"] = header["FILTER2"], header["FILTER1"]
    return header


# instrument -> crds hook name -> function. Names not listed here have no hook (crds' default).
HOOKS: dict[str, dict[str, Hook]] = {
    "acs": {
        "precondition_header_acs_biasfile_v2": precondition_acs_biasfile_v2,
        "fallback_header_acs_biasfile_v2": fallback_acs_biasfile_v2,
    },
    "wfc3": {"precondition_header_wfc3_biasfile_v1": precondition_wfc3_biasfile_v1},
    "wfpc2": {"fallback_header_wfpc2_flatfile_v1": fallback_wfpc2_flatfile_v1},
}
# Hooks crds has but these rmaps never name: an rmap that names one cannot be answered faithfully.
UNPORTED_HOOKS = frozenset({
    "precondition_header_acs_biasfile_v1", "precondition_header_acs_biasfile_v3",
    "fallback_header_acs_biasfile_v3",
})
