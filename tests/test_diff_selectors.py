"""Our diff equals `crds diff --brief --squash-tuples` for every selector kind, on HST and Roman rmaps.

Real JWST history (tests/test_diff_oracle.py) only uses Match, UseAfter and VersionAfter. Here small
but realistic synthetic rmap pairs cover the rest: ClosestTime, SelectVersion, GeometricallyNearest,
Bracket, two-parameter HST UseAfter, nested Match, every special match-key form, N/A and OMIT leaves,
changes of class and of parameter list, and header changes of every kind. The pairs are written to
a temporary folder, and crds runs once, in a subprocess, over all of them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from crdswatch.contexts.diff import diff_contexts
from crdswatch.contexts.mappings import Mapping, parse_mapping
from crdswatch.model import Change

ORACLE = Path(__file__).parent / "support" / "crds_oracle_files.py"


@dataclass(frozen=True)
class Sel:
    """A selector to write into an rmap: Sel("UseAfter", {key: file or Sel, ...})."""

    kind: str
    table: dict[Any, Any]


def M(table: dict[Any, Any]) -> Sel:
    return Sel("Match", table)


def UA(table: dict[Any, Any]) -> Sel:
    return Sel("UseAfter", table)


def render(selector: Sel, indent: int = 0) -> str:
    pad = "    " * (indent + 1)
    lines = [f"{selector.kind}({{"]
    for key, value in selector.table.items():
        text = render(value, indent + 1) if isinstance(value, Sel) else repr(value)
        lines.append(f"{pad}{key!r} : {text},")
    lines.append("    " * indent + "})")
    return "\n".join(lines)


def rmap_text(header: dict[str, Any], selector: Sel) -> str:
    body = "".join(f"    {key!r} : {header[key]!r},\n" for key in sorted(header))
    return f"header = {{\n{body}}}\n\nselector = {render(selector)}\n"


def header(observatory: str, instrument: str, filekind: str, parkey: tuple[tuple[str, ...], ...],
           **extra: Any) -> dict[str, Any]:
    base = {
        "derived_from": "generated from CDBS database 2013-07-20 13:50:28.374894"
        if observatory == "HST" else f"{observatory.lower()}_{instrument.lower()}_{filekind.lower()}_0000.rmap",
        "filekind": filekind, "instrument": instrument, "mapping": "REFERENCE",
        "observatory": observatory, "parkey": parkey, "sha1sum": "0" * 40,
    }
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}  # extra=None deletes a key


@dataclass(frozen=True)
class Case:
    ident: str
    old_header: dict[str, Any]
    old: Sel
    new_header: dict[str, Any]
    new: Sel

    @property
    def observatory(self) -> str:
        return str(self.old_header["observatory"]).lower()

    def names(self) -> tuple[str, str]:
        h = self.old_header
        stem = f"{self.observatory}_{h['instrument']}_{h['filekind']}".lower()
        return f"{stem}_0001.rmap", f"{stem}_0002.rmap"


# ------------------------------------------------------------------ HST

ACS_BIAS = (("DETECTOR", "CCDAMP", "CCDGAIN"), ("DATE-OBS", "TIME-OBS"))
ACS_OLD = M({
    ("HRC", "A", "1.0"): UA({
        "1992-01-01 00:00:00": "lcb12060j_bia.fits",
        "2002-03-01 00:00:00": "n3o1059hj_bia.fits",
        "2003-09-26 01:28:00": "nal1503ij_bia.fits",
    }),
    ("WFC", "ABCD", "2.0"): UA({
        "2002-03-01 00:00:00": "o3913216j_bia.fits",
        "2004-02-14 00:00:00": "o5d10135j_bia.fits",
    }),
    ("WFC", "ABCD", "1.0"): UA({
        "2002-03-01 00:00:00": "o9s16388j_bia.fits",
        "2004-06-18 04:36:00": "o9t1525sj_bia.fits",
    }),
})
ACS_NEW = M({
    ("HRC", "A", "1.0"): UA({
        "2002-03-01 00:00:00": "n3o1059ij_bia.fits",  # replaced; 1992 deleted
        "2003-09-26 01:28:00": "nal1503ij_bia.fits",
        "2004-07-02 08:09:00": "o9f15549j_bia.fits",  # added
    }),
    ("WFC", "ABCD", "2.0"): UA({
        "2002-03-01 00:00:00": "o3913216j_bia.fits",
        "2004-02-14 00:00:00": "o5d10135j_bia.fits",
    }),
    # ('WFC', 'ABCD', '1.0') deleted with its two dates
    ("WFC", "AD", "4.0"): UA({  # added with two dates
        "2004-07-14 16:52:00": "o9t1553tj_bia.fits",
        "2006-07-04 00:00:00": "q9e1206kj_bia.fits",
    }),
})

WFC3_DARK_PARKEY = (("DETECTOR", "CCDAMP", "FILTER", "BINAXIS1"),)
WFC3_KEYS_OLD = M({
    ("UVIS", "ABCD", "N/A", "1"): "w3m18525i_drk.fits",
    ("UVIS", "A|B|C", "ANY", "1"): "w3m1852ai_drk.fits",
    ("IR", "N/A", "(F1[0-9]{2}W)", "BETWEEN 1 5"): "x2a1433pi_drk.fits",
    ("UVIS", "{A|B}", "F200LP", "2"): "x2a1433qi_drk.fits",
    ("UVIS", "ABCD", "F*W", "3"): "x2a1433ri_drk.fits",
    ("UVIS", "C", "N/A", 2): "x2a1433si_drk.fits",
    ("IR", "N/A", "N/A", 1.5): "x2a1433ti_drk.fits",
    ("UVIS", "D", "NOT F200LP", "1"): "x2a1433ui_drk.fits",
    ("UVIS", ("A", "B"), "F200LP", "5"): "x2a1433vi_drk.fits",  # a match set for one parameter
})
WFC3_KEYS_NEW = M({
    ("UVIS", "ABCD", "N/A", "1"): "N/A",  # file -> N/A
    ("UVIS", "A|B|C", "ANY", "1"): "OMIT",  # file -> OMIT
    ("IR", "N/A", "(F1[0-9]{2}W)", "BETWEEN 1 5"): "y2a1433pi_drk.fits",
    # {A|B} deleted, {A|B|D} added
    ("UVIS", "{A|B|D}", "F200LP", "2"): "x2a1433qi_drk.fits",
    ("UVIS", "ABCD", "F*W", "3"): "x2a1433ri_drk.fits",
    ("UVIS", "C", "N/A", 2): "y2a1433si_drk.fits",  # int key field, replaced
    ("IR", "N/A", "N/A", 1.5): "x2a1433ti_drk.fits",
    ("IR", "N/A", "N/A", 2.5): "y2a1433ti_drk.fits",  # float key field, added
    ("UVIS", "D", "NOT F200LP", "1"): "x2a1433ui_drk.fits",
    ("UVIS", "A|B", "F.*|F200LP", "4"): "N/A",  # N/A rule added
    ("UVIS", ("A", "B"), "F200LP", "5"): "y2a1433vi_drk.fits",
})

WFC3_BIAS = (("DETECTOR", "CCDAMP"), ("DATE-OBS", "TIME-OBS"))
CLASSES_OLD = M({
    ("UVIS", "A"): UA({"2009-05-14 00:00:00": "u1r1346ri_bia.fits", "2010-01-01 00:00:00": "u1r1346si_bia.fits"}),
    ("UVIS", "B"): UA({"2009-05-14 00:00:00": "u1r1346ti_bia.fits"}),
    ("UVIS", "C"): UA({"2009-05-14 00:00:00": "u1r1346ui_bia.fits"}),
    ("UVIS", "D"): "N/A",
    ("IR", "N/A"): "OMIT",
    ("UVIS", "ABCD"): "u1r1346vi_bia.fits",
    ("UVIS", "AC"): "u1r1346wi_bia.fits",
})
CLASSES_NEW = M({
    ("UVIS", "A"): Sel("ClosestTime", {"2009-05-14 00:00:00": "u1r1346ri_bia.fits"}),  # UseAfter -> ClosestTime
    ("UVIS", "B"): "N/A",  # selector -> N/A
    ("UVIS", "C"): "v1r1346ui_bia.fits",  # selector -> file
    ("UVIS", "D"): UA({"2009-05-14 00:00:00": "v1r1346xi_bia.fits", "2012-01-01 00:00:00": "v1r1346yi_bia.fits"}),
    ("IR", "N/A"): "v1r1346zi_bia.fits",  # OMIT -> file
    ("UVIS", "ABCD"): "OMIT",  # file -> OMIT
    ("UVIS", "AC"): UA({"2009-05-14 00:00:00": "u1r1346wi_bia.fits"}),  # file -> selector
})

STIS_TOP = (("DATE-OBS", "TIME-OBS"),)

HST_CASES = [
    Case("hst_acs_useafter",
         header("HST", "ACS", "BIASFILE", ACS_BIAS, history="acs bias history"), ACS_OLD,
         header("HST", "ACS", "BIASFILE", ACS_BIAS, history="new Bias History", sha1sum="1" * 40,
                derived_from="hst_acs_biasfile_0001.rmap", description="bias by name of amplifier"), ACS_NEW),
    Case("hst_acs_header",
         header("HST", "ACS", "BIASFILE", ACS_BIAS, reffile_required="YES", reffile_format="image",
                extra_keys=("XCORNER", "YCORNER"), substitutions={"CCDGAIN": {"-1": "N/A"}},
                description="Bias frames"),
         ACS_OLD,
         header("HST", "ACS", "BIASFILE", ACS_BIAS, reffile_required="NO", reffile_format="IMAGE",
                substitutions={"CCDGAIN": {"-1": "N/A", "-999": "N/A"}}, reffile_switch="BIASCORR",
                rmap_relevance='((DETECTOR != "SBC") and (OBSTYPE == "IMAGING"))',
                unique_rowkeys=("CCDAMP", "CCDGAIN"), description="Bias frames, named by amplifier"),
         ACS_OLD),
    Case("hst_wfc3_match_keys",
         header("HST", "WFC3", "DARKFILE", WFC3_DARK_PARKEY), WFC3_KEYS_OLD,
         header("HST", "WFC3", "DARKFILE", WFC3_DARK_PARKEY), WFC3_KEYS_NEW),
    Case("hst_wfc3_string_vs_tuple_keys",
         header("HST", "WFC3", "FLSHFILE", (("DETECTOR",),)),
         M({"UVIS": "u1r1346ai_fls.fits", "IR": "u1r1346bi_fls.fits", ("N/A",): "N/A"}),
         header("HST", "WFC3", "FLSHFILE", (("DETECTOR",),)),
         M({("UVIS",): "u1r1346ai_fls.fits", "IR": "v1r1346bi_fls.fits", "N/A": "N/A", "ANY": "OMIT"})),
    Case("hst_wfc3_classes",
         header("HST", "WFC3", "BIASFILE", WFC3_BIAS), CLASSES_OLD,
         header("HST", "WFC3", "BIASFILE", WFC3_BIAS), CLASSES_NEW),
    Case("hst_acs_parkey_top",
         header("HST", "ACS", "DARKFILE", (("DETECTOR", "CCDAMP"),)),
         M({("WFC", "ABCD"): "abc1234dj_drk.fits", ("HRC", "A"): "abc1235dj_drk.fits"}),
         header("HST", "ACS", "DARKFILE", (("DETECTOR", "CCDAMP", "CCDGAIN"),)),
         M({("WFC", "ABCD", "2.0"): "abc1234dj_drk.fits", ("HRC", "A", "1.0"): "abc1235dj_drk.fits"})),
    Case("hst_acs_parkey_nested",
         header("HST", "ACS", "FLSHFILE", ACS_BIAS),
         M({("WFC", "ABCD", "2.0"): UA({"2002-03-01 00:00:00": "abc1236dj_fls.fits"}),
            ("HRC", "A", "1.0"): UA({"2002-03-01 00:00:00": "abc1237dj_fls.fits"})}),
         header("HST", "ACS", "FLSHFILE", (ACS_BIAS[0], ("DATE-OBS",))),
         M({("WFC", "ABCD", "2.0"): UA({"2002-03-01": "abc1236dj_fls.fits"}),
            ("HRC", "A", "1.0"): UA({"2002-03-01": "abc1238dj_fls.fits"})})),
    Case("hst_stis_top_useafter",
         header("HST", "STIS", "PCTAB", STIS_TOP),
         UA({"1996-10-01 00:00:00": "q541740qo_pct.fits", "2004-08-01 00:00:00": "q541740ro_pct.fits",
             "2009-05-01 00:00:00": "q541740so_pct.fits"}),
         header("HST", "STIS", "PCTAB", STIS_TOP),
         UA({"1996-10-01 00:00:00": "q541740qo_pct.fits", "2004-08-01 00:00:00": "r541740ro_pct.fits",
             "2012-05-01 12:00:00": "r541740to_pct.fits"})),
    Case("hst_stis_top_class",
         header("HST", "STIS", "TDSTAB", STIS_TOP),
         UA({"1996-10-01 00:00:00": "q541740qo_tds.fits"}),
         header("HST", "STIS", "TDSTAB", STIS_TOP),
         Sel("ClosestTime", {"1996-10-01 00:00:00": "q541740qo_tds.fits"})),
    Case("hst_cos_nested_match",
         header("HST", "COS", "FLATFILE", (("DETECTOR",), ("OPT_ELEM", "CENWAVE"), ("DATE-OBS", "TIME-OBS"))),
         M({("FUV",): M({("G130M", "1291"): UA({"2009-05-11 00:00:00": "s7g1700gl_flat.fits"}),
                         ("G160M", "1600"): UA({"2009-05-11 00:00:00": "s7g1700hl_flat.fits"}),
                         ("G140L", "N/A"): "N/A"}),
            ("NUV",): M({("G185M", "ANY"): UA({"2009-05-11 00:00:00": "s7g1700il_flat.fits"})})}),
         header("HST", "COS", "FLATFILE", (("DETECTOR",), ("OPT_ELEM", "CENWAVE"), ("DATE-OBS", "TIME-OBS"))),
         M({("FUV",): M({("G130M", "1291"): UA({"2009-05-11 00:00:00": "t7g1700gl_flat.fits"}),
                         ("G140L", "N/A"): "t7g1700jl_flat.fits",
                         ("G130M", "1222|1055"): UA({"2009-05-11 00:00:00": "t7g1700kl_flat.fits",
                                                     "2017-10-02 00:00:00": "t7g1700ll_flat.fits"})}),
            ("NUV",): M({("G185M", "ANY"): UA({"2009-05-11 00:00:00": "s7g1700il_flat.fits"}),
                         ("G225M", "ANY"): "OMIT"})})),
]

# ------------------------------------------------------------------ Roman

DET = "ROMAN.META.INSTRUMENT.DETECTOR"
MA = "ROMAN.META.EXPOSURE.MA_TABLE_NUMBER"
START = "ROMAN.META.EXPOSURE.START_TIME"
CALVER = "ROMAN.META.CALIBRATION_SOFTWARE_VERSION"
WAVE = "ROMAN.META.INSTRUMENT.OPTICAL_ELEMENT_WAVELENGTH"
NGROUPS = "ROMAN.META.EXPOSURE.NGROUPS"


def rhead(filekind: str, parkey: tuple[tuple[str, ...], ...], **extra: Any) -> dict[str, Any]:
    return header("ROMAN", "WFI", filekind, parkey, **extra)


ROMAN_CASES = [
    Case("roman_useafter",
         rhead("DARK", ((DET, MA), (START,))),
         M({("WFI01", "3"): UA({"2020-01-01 00:00:00": "roman_wfi_dark_0001.asdf",
                                "2024-03-01 00:00:00": "roman_wfi_dark_0002.asdf"}),
            ("WFI02", "3|4"): UA({"2020-01-01 00:00:00": "roman_wfi_dark_0003.asdf"})}),
         rhead("DARK", ((DET, MA), (START,)), reftype_note="ma table 3 only"),
         M({("WFI01", "3"): UA({"2020-01-01 00:00:00": "roman_wfi_dark_0004.asdf",
                                "2024-03-01T00:00:00": "roman_wfi_dark_0002.asdf"}),
            ("WFI02", "3|4"): UA({"2020-01-01 00:00:00": "roman_wfi_dark_0003.asdf"}),
            ("WFI03", "N/A"): UA({"2020-01-01 00:00:00": "roman_wfi_dark_0005.asdf"})})),
    Case("roman_versionafter",
         rhead("FLAT", ((DET,), (CALVER,))),
         M({"WFI01": Sel("VersionAfter", {"0.9.0": "roman_wfi_flat_0001.asdf", "1.2.3": "roman_wfi_flat_0002.asdf"}),
            "WFI02": Sel("VersionAfter", {"0.9.0": "roman_wfi_flat_0003.asdf"})}),
         rhead("FLAT", ((DET,), (CALVER,))),
         M({"WFI01": Sel("VersionAfter", {"0.9.0": "roman_wfi_flat_0001.asdf", "1.2.3": "roman_wfi_flat_0004.asdf",
                                          "1.10.0": "roman_wfi_flat_0005.asdf"}),
            "WFI03": Sel("VersionAfter", {"0.9.0": "roman_wfi_flat_0006.asdf"})})),
    Case("roman_versionafter_three_parameters",
         rhead("GAIN", ((DET,), ("CAL_MAJOR", "CAL_MINOR", "CAL_PATCH"))),
         M({("WFI01",): Sel("VersionAfter", {"0.9.0": "roman_wfi_gain_0001.asdf",
                                             "1.2.3": "roman_wfi_gain_0002.asdf"})}),
         rhead("GAIN", ((DET,), ("CAL_MAJOR", "CAL_MINOR", "CAL_PATCH"))),
         M({("WFI01",): Sel("VersionAfter", {"1.2.3": "roman_wfi_gain_0003.asdf",
                                             "2.0.1": "roman_wfi_gain_0004.asdf"})})),
    Case("roman_selectversion",
         rhead("READNOISE", ((DET,), (CALVER,), (START,))),
         M({("WFI01",): Sel("SelectVersion", {
             "<3.1": "roman_wfi_readnoise_0001.asdf",
             "<5": UA({"2020-01-01 00:00:00": "roman_wfi_readnoise_0002.asdf",
                       "2025-01-01 00:00:00": "roman_wfi_readnoise_0003.asdf"}),
             "=5.5": "roman_wfi_readnoise_0004.asdf",
             "default": "roman_wfi_readnoise_0005.asdf"}),
            ("WFI02",): Sel("SelectVersion", {"default": "roman_wfi_readnoise_0006.asdf"})}),
         rhead("READNOISE", ((DET,), (CALVER,), (START,))),
         M({("WFI01",): Sel("SelectVersion", {
             "<3.1": "roman_wfi_readnoise_0007.asdf",
             "<4": UA({"2020-01-01 00:00:00": "roman_wfi_readnoise_0002.asdf"}),
             "== 6": "roman_wfi_readnoise_0008.asdf",
             "default": UA({"2020-01-01 00:00:00": "roman_wfi_readnoise_0005.asdf"})}),
            ("WFI02",): Sel("SelectVersion", {"default": "N/A"})})),
    Case("roman_closesttime",
         rhead("DISTORTION", ((DET,), (START,))),
         M({("WFI01",): Sel("ClosestTime", {"2020-01-01 00:00:00": "roman_wfi_distortion_0001.asdf",
                                            "2026-06-01 00:00:00": "roman_wfi_distortion_0002.asdf"}),
            ("WFI02",): Sel("ClosestTime", {"2020-01-01 00:00:00": "roman_wfi_distortion_0003.asdf"})}),
         rhead("DISTORTION", ((DET,), (START,))),
         M({("WFI01",): Sel("ClosestTime", {"2020-01-01 00:00:00": "roman_wfi_distortion_0004.asdf",
                                            "2027-01-15 12:30:00": "roman_wfi_distortion_0005.asdf"}),
            ("WFI02",): Sel("ClosestTime", {"2020-01-01 00:00:00": "roman_wfi_distortion_0003.asdf"}),
            ("WFI03",): Sel("ClosestTime", {"2020-01-01 00:00:00": "roman_wfi_distortion_0006.asdf"})})),
    Case("roman_top_closesttime",
         rhead("PHOTOM", ((START,),)),
         Sel("ClosestTime", {"2020-01-01 00:00:00": "roman_wfi_photom_0001.asdf",
                             "2026-06-01 00:00:00": "roman_wfi_photom_0002.asdf"}),
         rhead("PHOTOM", ((START,),)),
         Sel("ClosestTime", {"2020-01-01 00:00:00": "roman_wfi_photom_0003.asdf",
                             "2027-06-01 00:00:00": "roman_wfi_photom_0004.asdf"})),
    Case("roman_geometrically_nearest",
         rhead("AREA", ((DET,), (WAVE,))),
         M({("WFI01",): Sel("GeometricallyNearest", {0.0: "roman_wfi_area_0000.asdf", 1.2: "roman_wfi_area_0001.asdf",
                                                     1.5: "roman_wfi_area_0002.asdf", 5.0: "roman_wfi_area_0003.asdf"})}),
         rhead("AREA", ((DET,), (WAVE,))),
         M({("WFI01",): Sel("GeometricallyNearest", {1.2: "roman_wfi_area_0004.asdf", 1.5: "roman_wfi_area_0002.asdf",
                                                     2: "roman_wfi_area_0005.asdf", 5.0: "N/A"})})),
    Case("roman_top_bracket",
         rhead("SATURATION", ((NGROUPS,),)),
         Sel("Bracket", {0: "roman_wfi_saturation_0001.asdf", 1.2: "roman_wfi_saturation_0002.asdf",
                         5: "roman_wfi_saturation_0003.asdf", 10.5: "roman_wfi_saturation_0004.asdf"}),
         rhead("SATURATION", ((NGROUPS,),)),
         Sel("Bracket", {0: "roman_wfi_saturation_0005.asdf", 1.2: "roman_wfi_saturation_0002.asdf",
                         7: "roman_wfi_saturation_0006.asdf", 10.5: "roman_wfi_saturation_0007.asdf"})),
    Case("roman_nested_bracket",
         rhead("LINEARITY", ((DET,), (NGROUPS,))),
         M({("WFI01",): Sel("Bracket", {0: "roman_wfi_linearity_0001.asdf", 2.5: "roman_wfi_linearity_0002.asdf"}),
            ("WFI02",): Sel("Bracket", {1: "roman_wfi_linearity_0003.asdf"})}),
         rhead("LINEARITY", ((DET,), (NGROUPS,))),
         M({("WFI01",): Sel("Bracket", {0.0: "roman_wfi_linearity_0004.asdf", 3.5: "roman_wfi_linearity_0005.asdf"}),
            ("WFI02",): Sel("GeometricallyNearest", {1: "roman_wfi_linearity_0003.asdf"}),
            ("WFI04",): Sel("Bracket", {0: "roman_wfi_linearity_0006.asdf", 4: "roman_wfi_linearity_0007.asdf"})})),
]

EDGE_CASES = [
    # Substitutions (the header's and crds' default SUBARRAY GENERIC -> N/A) merge two rules of the
    # new nested selector: crds counts the merged rules in "nselections=".
    Case("hst_acs_substitution_merge",
         header("HST", "ACS", "PFLTFILE", (("DETECTOR",), ("SUBARRAY", "CCDGAIN"))),
         M({("WFC",): "abc1239dj_pfl.fits", ("HRC",): "abc1240dj_pfl.fits"}),
         header("HST", "ACS", "PFLTFILE", (("DETECTOR",), ("SUBARRAY", "CCDGAIN")),
                substitutions={"CCDGAIN": {"-1": "1.0"}}),
         M({("WFC",): M({("GENERIC", "2.0"): "abc1241dj_pfl.fits", ("N/A", "2.0"): "abc1242dj_pfl.fits",
                         ("FULL", "2.0"): "abc1243dj_pfl.fits"}),
            ("HRC",): M({("FULL", "-1"): "abc1244dj_pfl.fits", ("FULL", "1.0"): "abc1245dj_pfl.fits",
                         ("FULL", "4.0"): "abc1246dj_pfl.fits"})})),
    Case("hst_useafter_odd_keys",
         header("HST", "WFC3", "DRKCFILE", (("DETECTOR",), ("DATE-OBS", "TIME-OBS"))),
         M({("UVIS",): UA({"2009-05-14": "u1r1346ri_dkc.fits", "2010-01-01 00:00:00": "u1r1346si_dkc.fits"})}),
         header("HST", "WFC3", "DRKCFILE", (("DETECTOR",), ("DATE-OBS", "TIME-OBS"))),
         M({("UVIS",): UA({"2009-05-14": "v1r1346ri_dkc.fits", "2011-02-03 4:05:06": "v1r1346si_dkc.fits"})})),
    Case("roman_negative_and_relations",
         rhead("TEMPERATURE", ((DET,), (CALVER,), ("ROMAN.META.EXPOSURE.TEMPERATURE",))),
         M({("WFI01",): Sel("SelectVersion", {
             "<=4.5": Sel("Bracket", {-1.5: "roman_wfi_temperature_0001.asdf", 3: "roman_wfi_temperature_0002.asdf"}),
             "default": "roman_wfi_temperature_0003.asdf"})}),
         rhead("TEMPERATURE", ((DET,), (CALVER,), ("ROMAN.META.EXPOSURE.TEMPERATURE",))),
         M({("WFI01",): Sel("SelectVersion", {
             "<=4.5": Sel("Bracket", {-1.5: "roman_wfi_temperature_0004.asdf", -0.5: "roman_wfi_temperature_0005.asdf"}),
             "= 5": "roman_wfi_temperature_0003.asdf",
             "default": "roman_wfi_temperature_0003.asdf"})})),
]

CASES = HST_CASES + ROMAN_CASES + EDGE_CASES

# Constructs crds itself refuses (we mirror crds, so they are left out of the comparison):
# a SelectVersion relation other than <, <=, =, == or 'default'.
REFUSED = [
    Case("refused_selectversion_ge",
         rhead("DARKDECAY", ((DET,), (CALVER,))),
         M({("WFI01",): Sel("SelectVersion", {">=5": "roman_wfi_darkdecay_0001.asdf"})}),
         rhead("DARKDECAY", ((DET,), (CALVER,))),
         M({("WFI01",): Sel("SelectVersion", {">=5": "roman_wfi_darkdecay_0002.asdf"})})),
    # two match keys that condition to the same key ('ANY' is '*')
    Case("refused_condition_collision",
         header("HST", "ACS", "CRREJTAB", (("DETECTOR", "CCDAMP"),)),
         M({("WFC", "ANY"): "abc1247dj_crr.fits", ("WFC", "*"): "abc1248dj_crr.fits"}),
         header("HST", "ACS", "CRREJTAB", (("DETECTOR", "CCDAMP"),)),
         M({("WFC", "ANY"): "abc1249dj_crr.fits", ("WFC", "*"): "abc1248dj_crr.fits"})),
    # a change mentioning two of the "boring" words: crds.diff.remove_boring removes it twice
    Case("refused_two_boring_words",
         header("HST", "ACS", "CCDTAB", (("DETECTOR",),)),
         M({("WFC",): "abc1250dj_ccd.fits"}),
         header("HST", "ACS", "CCDTAB", (("DETECTOR",),), description="file name and sha1sum checked"),
         M({("WFC",): "abc1250dj_ccd.fits"})),
]


def imap_text(name: str, selections: dict[str, str], sha1sum: str) -> str:
    head = {"derived_from": "hst_wfc3_0000.imap", "instrument": "WFC3", "mapping": "INSTRUMENT", "name": name,
            "observatory": "HST", "parkey": ("REFTYPE",), "sha1sum": sha1sum}
    body = "".join(f"    {key!r} : {head[key]!r},\n" for key in sorted(head))
    rules = "".join(f"    {key!r} : {value!r},\n" for key, value in sorted(selections.items()))
    return f"header = {{\n{body}}}\n\nselector = {{\n{rules}}}\n"


WFC3_BIAS_RMAPS = {  # name -> (sha1sum, selector): the instrument level compares nested sha1sums
    "hst_wfc3_biasfile_0101.rmap": ("a" * 40, CLASSES_OLD),
    "hst_wfc3_biasfile_0102.rmap": ("b" * 40, CLASSES_NEW),
    "hst_wfc3_darkfile_0101.rmap": ("c" * 40, WFC3_KEYS_OLD),
    "hst_wfc3_darkfile_0102.rmap": ("c" * 40, WFC3_KEYS_OLD),  # same sum: crds shows no replacement
    "hst_wfc3_pfltfile_0101.rmap": ("f" * 40, M({("UVIS", "A"): UA({"2009-05-14 00:00:00": "u1r1346ri_pfl.fits"})})),
}
IMAPS = {
    "hst_wfc3_0101.imap": ("d" * 40, {"BIASFILE": "hst_wfc3_biasfile_0101.rmap", "CCDTAB": "N/A",
                                      "DARKFILE": "hst_wfc3_darkfile_0101.rmap", "FLSHFILE": "OMIT",
                                      "PFLTFILE": "N/A"}),
    "hst_wfc3_0102.imap": ("e" * 40, {"BIASFILE": "hst_wfc3_biasfile_0102.rmap", "CCDTAB": "N/A",
                                      "DARKFILE": "hst_wfc3_darkfile_0102.rmap", "FLSHFILE": "N/A",
                                      "PCTETAB": "N/A", "PFLTFILE": "hst_wfc3_pfltfile_0101.rmap"}),
}


def write_instrument_pair(cache: Path) -> tuple[Path, Path]:
    """An HST imap pair with its rmaps, in a CRDS cache layout so crds finds the nested files."""
    folder = cache / "mappings" / "hst"
    folder.mkdir(parents=True)
    for name, (sha1sum, selector) in WFC3_BIAS_RMAPS.items():
        filekind = name.split("_")[2].upper()
        head = header("HST", "WFC3", filekind, WFC3_DARK_PARKEY if filekind == "DARKFILE" else WFC3_BIAS,
                      name=name, sha1sum=sha1sum)
        (folder / name).write_text(rmap_text(head, selector))
    for name, (sha1sum, selections) in IMAPS.items():
        (folder / name).write_text(imap_text(name, selections, sha1sum))
    return folder / "hst_wfc3_0101.imap", folder / "hst_wfc3_0102.imap"


def write_case(case: Case, folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True)
    paths = []
    for name, head, selector in zip(case.names(), (case.old_header, case.new_header), (case.old, case.new)):
        path = folder / name
        path.write_text(rmap_text({**head, "name": name}, selector))
        paths.append(path)
    return paths[0], paths[1]


@pytest.fixture(scope="module")
def crds_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("crdspath")


@pytest.fixture(scope="module")
def written(crds_path: Path) -> dict[str, tuple[Path, Path]]:
    pairs = {case.ident: write_case(case, crds_path / "cases" / case.ident) for case in CASES + REFUSED}
    pairs["hst_wfc3_imap"] = write_instrument_pair(crds_path)
    return pairs


@pytest.fixture(scope="module")
def oracle(written: dict[str, tuple[Path, Path]], crds_path: Path) -> dict[str, Any]:
    root = crds_path
    spec, out = root / "spec.json", root / "out.json"
    obs = {case.ident: case.observatory for case in CASES + REFUSED} | {"hst_wfc3_imap": "hst"}
    spec.write_text(json.dumps([[ident, obs[ident], str(a), str(b)] for ident, (a, b) in written.items()]))
    subprocess.run([sys.executable, str(ORACLE), str(root), str(spec), str(out)], check=True, timeout=300)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def ours(case: Case, written: dict[str, tuple[Path, Path]]) -> list[Change]:
    lookup: dict[str, Mapping] = {}
    for path in written[case.ident]:
        lookup[path.name] = parse_mapping(path.name, path.read_text())
    old, new = case.names()
    return list(diff_contexts(old, new, lookup).changes)


@pytest.mark.parametrize("case", CASES, ids=[c.ident for c in CASES])
def test_lines_equal_crds(case: Case, oracle: dict[str, Any], written: dict[str, tuple[Path, Path]]) -> None:
    expected = oracle[case.ident]
    assert isinstance(expected, list), f"crds refused {case.ident}: {expected}"
    assert expected, "the pair must really differ in crds' eyes"
    assert [c.line for c in ours(case, written)] == expected


def test_instrument_level_equals_crds(oracle: dict[str, Any], written: dict[str, tuple[Path, Path]]) -> None:
    folder = written["hst_wfc3_imap"][0].parent
    lookup = {path.name: parse_mapping(path.name, path.read_text()) for path in folder.iterdir()}
    changes = diff_contexts("hst_wfc3_0101.imap", "hst_wfc3_0102.imap", lookup).changes
    assert [c.line for c in changes] == oracle["hst_wfc3_imap"]
    levels = {c.level for c in changes}
    assert levels == {"instrument", "reference"}
    added = next(c for c in changes if c.level == "instrument" and c.action == "added")
    assert (added.match, added.new_file, added.reftype, added.instrument) == (("pctetab",), "N/A", "pctetab", "wfc3")


def test_crds_refuses_what_we_leave_out(oracle: dict[str, Any]) -> None:
    for case in REFUSED:
        assert "error" in oracle[case.ident], oracle[case.ident]


def by_line(case_id: str, written: dict[str, tuple[Path, Path]]) -> dict[str, Change]:
    case = next(c for c in CASES if c.ident == case_id)
    return {c.line: c for c in ours(case, written)}


def test_hst_two_parameter_useafter_fields(written: dict[str, tuple[Path, Path]]) -> None:
    got = by_line("hst_acs_useafter", written)
    pair = "hst_acs_biasfile_0001.rmap hst_acs_biasfile_0002.rmap"
    replaced = got[f"{pair} -- HRC A 1.0 -- 2002-03-01 00:00:00 -- replaced n3o1059hj_bia.fits with n3o1059ij_bia.fits"]
    assert (replaced.action, replaced.match, replaced.useafter) == ("replaced", ("HRC", "A", "1.0"), "2002-03-01 00:00:00")
    assert (replaced.old_file, replaced.new_file) == ("n3o1059hj_bia.fits", "n3o1059ij_bia.fits")
    assert replaced.parameters == ("DETECTOR", "CCDAMP", "CCDGAIN")
    assert (replaced.instrument, replaced.reftype, replaced.level) == ("acs", "biasfile", "reference")
    added = got[f"{pair} -- HRC A 1.0 -- 2004-07-02 08:09:00 -- added terminal o9f15549j_bia.fits"]
    assert (added.action, added.rule, added.old_file, added.new_file) == ("added", "terminal", None, "o9f15549j_bia.fits")
    assert added.useafter == "2004-07-02 08:09:00"
    gone = got[f"{pair} -- WFC ABCD 1.0 -- 2004-06-18 04:36:00 -- deleted Match rule for o9t1525sj_bia.fits"]
    assert (gone.action, gone.rule, gone.old_file, gone.new_file) == ("deleted", "Match rule", "o9t1525sj_bia.fits", None)
    assert (gone.match, gone.useafter) == (("WFC", "ABCD", "1.0"), "2004-06-18 04:36:00")
    # the description mentions "name": crds --brief hides the whole change, and so do we
    assert not any("description" in line for line in got)


def test_header_change_fields(written: dict[str, tuple[Path, Path]]) -> None:
    changes = [c for c in by_line("hst_acs_header", written).values()]
    assert {c.action for c in changes} == {"header"}
    keyed = {c.key: c for c in changes}
    assert keyed["substitutions"].new_value == {"CCDGAIN": {"-1": "N/A", "-999": "N/A"}}
    assert keyed["extra_keys"].old_value == ("XCORNER", "YCORNER") and keyed["extra_keys"].new_value is None
    assert keyed["reffile_switch"].old_value is None
    assert "reffile_format" not in keyed  # 'image' and 'IMAGE' are one value to crds


def test_date_and_version_selector_fields(written: dict[str, tuple[Path, Path]]) -> None:
    closest = by_line("roman_closesttime", written)
    c = next(c for c in closest.values() if c.action == "replaced")
    assert (c.match, c.useafter) == (("WFI01",), "2020-01-01 00:00:00")
    top = by_line("hst_stis_top_useafter", written)
    c = next(c for c in top.values() if c.action == "added")
    assert (c.match, c.useafter, c.rule, c.new_file) == ((), "2012-05-01 12:00:00", "UseAfter rule", "r541740to_pct.fits")
    version = by_line("roman_versionafter_three_parameters", written)
    c = next(c for c in version.values() if c.action == "added")
    assert (c.match, c.useafter) == (("WFI01", "2", "0", "1"), None)
    select = by_line("roman_selectversion", written)
    c = next(c for c in select.values() if c.action == "replaced" and c.old_file == "roman_wfi_readnoise_0001.asdf")
    assert (c.match, c.useafter, c.new_file) == (("WFI01", "<3.1"), None, "roman_wfi_readnoise_0007.asdf")


def test_class_change_fields(written: dict[str, tuple[Path, Path]]) -> None:
    changes = list(by_line("hst_wfc3_classes", written).values())
    classes = {c.match: (c.old_value, c.new_value) for c in changes if c.action == "classes"}
    assert classes == {("UVIS", "A"): ("UseAfter", "ClosestTime"), ("UVIS", "B"): ("UseAfter", "N/A"),
                       ("UVIS", "C"): ("UseAfter", "str")}
    into = next(c for c in changes if c.match == ("UVIS", "AC"))
    assert (into.action, into.old_file, into.new_file) == ("replaced", "u1r1346wi_bia.fits", None)
