"""The subscribe form's offer from a real context (pure): reference types and parameter values per
instrument, capped; choices outside it refused; unreadable mappings named, not fatal."""

from __future__ import annotations

from pathlib import Path

from crdswatch.contexts.library import MappingLibrary
from crdswatch.contexts.narrowing import check_narrowing, merge_options, narrowing_options
from crdswatch.errors import UnknownMappingError


def test_offer_of_a_real_context_per_instrument_and_capped(jwst_mappings: Path) -> None:
    library = MappingLibrary.from_dir(jwst_mappings)
    nirspec = narrowing_options("jwst_0500.pmap", library, ["nirspec"])
    assert {"flat", "dark", "msaoper"} <= set(nirspec.reftypes) and "distortion" not in nirspec.reftypes
    assert {"NRS_IFU", "NRS_MSASPEC"} <= set(nirspec.values("EXP_TYPE"))
    assert nirspec.values("DETECTOR") == ("NRS1", "NRS2")
    assert all(not v.startswith("(") and "*" not in v and v != "N/A" for _, vs in nirspec.parameters for v in vs)
    assert nirspec.missing == () and nirspec.contexts == ("jwst_0500.pmap",)
    everything = narrowing_options("jwst_0500.pmap", library, None, max_values=10)
    assert set(nirspec.reftypes) < set(everything.reftypes)
    assert all(len(vs) <= 10 for _, vs in everything.parameters) and everything.more["EXP_TYPE"] > 0
    assert merge_options([nirspec]) is nirspec


def test_unreadable_mappings_are_named_and_the_rest_offered(jwst_mappings: Path) -> None:
    real = MappingLibrary.from_dir(jwst_mappings)

    def load(name: str) -> str:
        if name.endswith(".rmap") and "flat" in name:
            raise UnknownMappingError(f"{name}: not downloaded yet")
        return (jwst_mappings / name).read_text()

    offer = narrowing_options("jwst_0500.pmap", MappingLibrary(load), ["nirspec"])
    assert "flat" in offer.reftypes and any("flat" in m for m in offer.missing)  # the imap names it
    assert offer.values("EXP_TYPE")
    nothing = narrowing_options("jwst_9999.pmap", real, ["nirspec"])
    assert not nothing.known and nothing.missing == ("jwst_9999.pmap",)


def test_choices_outside_the_offer_are_refused(jwst_mappings: Path) -> None:
    offer = narrowing_options("jwst_0500.pmap", MappingLibrary.from_dir(jwst_mappings), ["miri"])
    ok, problems = check_narrowing(offer, ["FLAT", " dark "], {"exp_type": ["mir_image"], "DETECTOR": [""]})
    assert problems == [] and ok == {"reftypes": ["dark", "flat"], "parameters": {"EXP_TYPE": ["MIR_IMAGE"]}}
    assert check_narrowing(offer, [], {}) == ({}, [])
    bad, problems = check_narrowing(offer, ["flat", "x" * 10_000], {"EXP_TYPE": ["NRS_IFU"], "NOPE": ["1"]})
    assert bad == {} and len(problems) == 3 and all(len(p) < 200 for p in problems)
    assert "not offered" in problems[2]
