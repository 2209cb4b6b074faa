"""Subscriber filters: CRDS matching semantics (crds.selectors.matcher as oracle) on real rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from crdswatch.contexts.diff import diff_contexts
from crdswatch.contexts.library import MappingLibrary
from crdswatch.model import Change, FileInfo
from crdswatch.notices.match import Filters, rule_value_matches, select_changes

RULE_VALUES = ["NRS_IFU", "NRS_IFU|NRS_MSASPEC", "ANY", "N/A", "NRS*", "(NRS_(IFU|FIXEDSLIT))", "{A|B}",
               "BETWEEN 1 5", ">2.5", "<=3", "NOT NRS_IFU", "#>1 AND <4#", "nrs_ifu"]
WANTED = ["NRS_IFU", "NRS_MSASPEC", "NRS_FIXEDSLIT", "MIR_IMAGE", "A|B", "A", "3", "5", "1", "2.5", "nrs_ifu"]


@pytest.mark.parametrize("rule", RULE_VALUES)
def test_rule_values_match_like_crds(rule: str) -> None:
    from crds.core import selectors, utils

    for wanted in WANTED:
        key = rule if rule.startswith(("(", "{", "#")) or rule.upper().startswith(("BETWEEN", "NOT ")) \
            else "|".join(utils.condition_value(v) for v in rule.split("|"))
        expected = selectors.matcher(key).match(utils.condition_value(wanted)) >= 0
        assert rule_value_matches(rule, wanted) == expected, (rule, wanted)


def _rule(instrument: str, reftype: str, params: tuple[str, ...], values: tuple[str, ...], new: str) -> Change:
    return Change("a.rmap", "b.rmap", "reference", "added", "line", values, params, "2020-01-01 00:00:00",
                  None, new, instrument, reftype, "Match rule")


def test_filters_select_only_what_is_asked() -> None:
    ifu = _rule("nirspec", "dark", ("DETECTOR", "EXP_TYPE"), ("NRS1", "NRS_IFU|NRS_MSASPEC"), "a.fits")
    fixed = _rule("nirspec", "dark", ("DETECTOR", "EXP_TYPE"), ("NRS1", "NRS_FIXEDSLIT"), "b.fits")
    anyexp = _rule("nirspec", "flat", ("DETECTOR",), ("NRS1",), "c.fits")
    miri = _rule("miri", "dark", ("DETECTOR", "EXP_TYPE"), ("MIRIMAGE", "MIR_IMAGE"), "d.fits")
    changes = [ifu, fixed, anyexp, miri]
    assert select_changes("jwst", changes, Filters(), {}) == changes
    assert select_changes("hst", changes, Filters.of(observatories=["JWST"]), {}) == []
    assert select_changes("jwst", changes, Filters.of(instruments=["NIRSpec"]), {}) == [ifu, fixed, anyexp]
    assert select_changes("jwst", changes, Filters.of(reftypes=["FLAT"]), {}) == [anyexp]
    by_mode = Filters.of(parameters={"META.EXPOSURE.TYPE": ["NRS_IFU"]})
    # the flat rule does not select on EXP_TYPE, so it applies to IFU exposures too
    assert select_changes("jwst", changes, by_mode, {}) == [ifu, anyexp]
    catalog = {"a.fits": FileInfo("a.fits", pedigree="GROUND 2014-01-01", change_level="SEVERE"),
               "b.fits": FileInfo("b.fits", pedigree="INFLIGHT 2022-07-01 2022-07-30", change_level="MODERATE")}
    assert select_changes("jwst", changes, Filters.of(pedigrees=["inflight"]), catalog) == [fixed, anyexp, miri]
    assert select_changes("jwst", changes, Filters.of(change_levels=["severe"]), catalog) == [ifu, anyexp, miri]


def test_real_activation_selection(jwst_mappings: Path) -> None:
    result = diff_contexts("jwst_0540.pmap", "jwst_0541.pmap", MappingLibrary.from_dir(jwst_mappings))
    wanted = select_changes("jwst", result.changes, Filters.of(reftypes=["superbias"]), {})
    assert wanted and all(c.reftype == "superbias" for c in wanted)
    assert len([c for c in result.changes if c.reftype == "superbias"]) == len(wanted)
    assert select_changes("jwst", result.changes, Filters.of(instruments=["miri"]), {}) == []
    rapid = select_changes("jwst", result.changes, Filters.of(parameters={"READPATT": ["NRSRAPIDD1"]}), {})
    assert rapid and all("NRSRAPIDD1" in c.match[1] or c.level != "reference" for c in rapid if "READPATT" in c.parameters)
