"""summary: real JWST activations -> per-file events, counts and structural notes."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest

from crdswatch.contexts.diff import diff_contexts
from crdswatch.contexts.history import load_server_config
from crdswatch.contexts.library import MappingLibrary
from crdswatch.model import Change, FileInfo
from crdswatch.notices.summary import Summary, is_special, summarise_changes


@pytest.fixture(scope="module")
def library(jwst_mappings: Path) -> MappingLibrary:
    return MappingLibrary.from_dir(jwst_mappings)


def _summary(library: MappingLibrary, old: str, new: str, catalog: dict[str, FileInfo] | None = None) -> Summary:
    return summarise_changes(diff_contexts(old, new, library).changes, catalog)


def _files(changes: tuple[Change, ...]) -> set[str]:
    return {f for c in changes if c.level == "reference" for f in (c.old_file, c.new_file)
            if f and not is_special(f)}


def test_nirspec_readpatt_widening_is_one_fact_per_file(library: MappingLibrary) -> None:
    s = _summary(library, "jwst_0540.pmap", "jwst_0541.pmap")
    assert [(x.instrument, x.reftype) for x in s.sections] == [
        ("nirspec", "dark"), ("nirspec", "readnoise"), ("nirspec", "refpix"), ("nirspec", "superbias")]
    assert {e.kind for e in s.events} == {"modes changed"}
    assert len(s.events) == 39 and s.count("widened") == 39 and s.count("narrowed") == 0
    assert s.new_files == ()
    dark = s.sections[0].events
    assert len(dark) == 18
    first = dark[0]
    assert first.file == "jwst_nirspec_dark_0022.fits" and first.useafter == "2000-01-01 00:00:00"
    assert first.modes["DETECTOR"] == "NRS1"
    assert first.modes["READPATT"] == "NRS|NRSRAPID|NRSRAPIDD1|NRSRAPIDD2|NRSRAPIDD6"
    (change,) = first.mode_changes
    assert (change.parameter, change.was) == ("READPATT", "NRS|NRSRAPID")
    assert change.gained == ("NRSRAPIDD1", "NRSRAPIDD2", "NRSRAPIDD6") and change.lost == ()
    assert first.rmaps == ("jwst_nirspec_dark_0028.rmap", "jwst_nirspec_dark_0029.rmap")
    assert len(first.lines) == 2  # the deleted and the added crds diff line
    (refpix,) = s.sections[2].events
    assert refpix.not_applicable and refpix.direction == "widened"


def test_new_replaced_and_removed_files(library: MappingLibrary) -> None:
    s = _summary(library, "jwst_0508.pmap", "jwst_0523.pmap")
    kinds = {e.kind for e in s.events}
    assert {"new", "replaced", "removed"} <= kinds
    replaced = next(e for e in s.events if e.kind == "replaced")
    assert replaced.old_file and replaced.old_file != replaced.file
    news = [e.file for e in s.events if e.kind == "new"]
    assert set(news) <= set(s.new_files)
    assert len(s.new_files) == len(set(s.new_files))
    removed = {e.file for e in s.events if e.kind == "removed"}
    assert not removed & set(news)


def test_parkey_change_is_prominent(library: MappingLibrary) -> None:
    s = _summary(library, "jwst_0300.pmap", "jwst_0541.pmap")
    parkey = [n for x in s.sections for n in x.notes if "parkey" in n.line]
    assert parkey and all(n.prominent and n.kind == "structure" for n in parkey)
    assert "which exposures" in parkey[0].text
    assert s.structural


def test_imap_level_reference_types(library: MappingLibrary) -> None:
    s = _summary(library, "jwst_0059.pmap", "jwst_0061.pmap")
    na = [n for x in s.sections for n in x.notes if n.kind == "reftype N/A"]
    assert na and all(n.prominent for n in na)
    s = _summary(library, "jwst_0003.pmap", "jwst_0005.pmap")
    kinds = {(x.instrument, x.reftype): [n.kind for n in x.notes] for x in s.sections}
    assert kinds[("fgs", "amplifier")] == ["reftype removed"]
    assert "reftype added" in kinds[("fgs", "gain")]


def test_deleting_an_na_entry_is_a_removal_not_an_addition(library: MappingLibrary) -> None:
    """jwst_0426 drops FGS's `'v2v3': 'N/A'` imap entry; crds diff calls it `-- v2v3 -- deleted N/A`."""
    s = _summary(library, "jwst_0425.pmap", "jwst_0426.pmap")
    notes = {(x.instrument, x.reftype): x.notes for x in s.sections}
    (note,) = notes[("fgs", "v2v3")]
    assert note.line.endswith("-- v2v3 -- deleted N/A")
    assert (note.kind, note.text, note.prominent) == ("reftype removed", "V2V3 N/A entry removed", False)
    # MIRI's v2v3 pointed at a real rmap: that one is the removal of a reference type.
    (miri,) = notes[("miri", "v2v3")]
    assert (miri.kind, miri.text) == ("reftype removed", "reference type V2V3 removed (was jwst_miri_v2v3_0014.rmap)")
    assert not [n for ns in notes.values() for n in ns if "added" in n.text or "None" in n.text]


def test_catalog_attached_when_known(library: MappingLibrary) -> None:
    info = FileInfo("jwst_nirspec_dark_0022.fits", pedigree="GROUND")
    s = _summary(library, "jwst_0540.pmap", "jwst_0541.pmap", {info.name: info})
    by_file = {e.file: e for e in s.events}
    assert by_file["jwst_nirspec_dark_0022.fits"].info == info
    assert by_file["jwst_nirspec_dark_0023.fits"].info is None


def test_no_activation_drops_a_file(library: MappingLibrary, jwst_server_config: Path) -> None:
    activations = load_server_config(jwst_server_config).activations()
    for old, new in pairwise(activations):
        changes = diff_contexts(old.context, new.context, library).changes
        assert set(summarise_changes(changes).files) == _files(changes), (old.context, new.context)


def _rule(action: str, readpatt: str, file: str = "f.fits", useafter: str = "2020-01-01 00:00:00") -> Change:
    return Change("a.rmap", "b.rmap", "reference", action, f"{action} {file}",  # type: ignore[arg-type]
                  match=("NRS1", readpatt), parameters=("META.INSTRUMENT.DETECTOR", "META.EXPOSURE.READPATT"),
                  useafter=useafter, old_file=file if action == "deleted" else None,
                  new_file=file if action == "added" else None, instrument="nirspec", reftype="dark",
                  rule="Match rule")


def test_narrowed_changed_and_moved() -> None:
    s = summarise_changes([_rule("deleted", "A|B"), _rule("added", "A")])
    (event,) = s.events
    assert event.direction == "narrowed" and event.mode_changes[0].lost == ("B",)
    assert s.count("narrowed") == 1
    s = summarise_changes([_rule("deleted", "A"), _rule("added", "B")])
    assert s.events[0].direction == "changed"
    s = summarise_changes([_rule("deleted", "A", useafter="2019-01-01 00:00:00"), _rule("added", "A")])
    (event,) = s.events
    assert event.kind == "modes changed" and event.old_useafter == "2019-01-01 00:00:00"
    assert [m.parameter for m in event.mode_changes] == ["USEAFTER"]
    s = summarise_changes([_rule("added", "A", "new.fits"), _rule("deleted", "B", "old.fits")])
    assert [(e.kind, e.file) for e in s.events] == [("new", "new.fits"), ("removed", "old.fits")]
    assert s.new_files == ("new.fits",)


def test_summarise_shares_one_summary_per_diff() -> None:
    """Rows with the same selection share one ActivationDiff: their notices share its summary."""
    from dataclasses import replace

    from crdswatch.model import Activation, ActivationDiff
    from crdswatch.notices.summary import summarise

    diff = ActivationDiff("jwst", "https://crds.invalid", "operational", Activation("2024-01-01", "jwst_0002.pmap", ""),
                          "jwst_0001.pmap", ())
    assert summarise(diff) is summarise(diff)
    assert summarise(replace(diff)) is not summarise(diff)  # an equal diff is another key
