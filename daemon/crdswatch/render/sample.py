"""A realistic sample notice from fixed data, for `crdswatch send-test` (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from crdswatch.model import Action, Activation, ActivationDiff, Change, FileInfo, Notice

__all__ = ["sample_notice"]

_RMAP = ("jwst_nirspec_readnoise_0014.rmap", "jwst_nirspec_readnoise_0015.rmap")
_PARAMS = ("DETECTOR", "READPATT", "SUBARRAY")
_WAS = "NRSRAPID|NRS"
_NOW = "NRSRAPID|NRS|NRSRAPIDD1|NRSRAPIDD2|NRSRAPIDD6"
_FLAT = ("jwst_nirspec_fflat_0010.rmap", "jwst_nirspec_fflat_0011.rmap")


def _rule(action: Action, detector: str, readpatt: str, file: str) -> Change:
    old, new = (file, None) if action == "deleted" else (None, file)
    return Change(
        old_mapping=_RMAP[0], new_mapping=_RMAP[1], level="reference", action=action,
        line=(f"{_RMAP[0]} {_RMAP[1]} -- {detector} {readpatt} FULL -- 2015-01-01 00:00:00 -- "
              f"{action} Match rule for {file}"),
        match=(detector, readpatt, "FULL"), parameters=_PARAMS, useafter="2015-01-01 00:00:00",
        old_file=old, new_file=new, instrument="nirspec", reftype="readnoise", rule="Match rule",
    )


def _flat(action: Action, old: str | None, new: str, mode: str) -> Change:
    words = f"replaced {old} with {new}" if action == "replaced" else f"added terminal {new}"
    return Change(
        old_mapping=_FLAT[0], new_mapping=_FLAT[1], level="reference", action=action,
        line=f"{_FLAT[0]} {_FLAT[1]} -- FS {mode} -- 2016-01-01 00:00:00 -- {words}",
        match=("FS", mode), parameters=("EXP_TYPE", "FILTER"), useafter="2016-01-01 00:00:00",
        old_file=old, new_file=new, instrument="nirspec", reftype="fflat",
        rule=None if action == "replaced" else "terminal",
    )


def sample_notice(now: datetime) -> Notice:
    """A NIRSpec activation 'now': a READPATT widening, a replaced and a new flat, one file uncatalogued."""
    changes = (
        _rule("deleted", "NRS1", _WAS, "jwst_nirspec_readnoise_0019.fits"),
        _rule("added", "NRS1", _NOW, "jwst_nirspec_readnoise_0019.fits"),
        _rule("deleted", "NRS2", _WAS, "jwst_nirspec_readnoise_0016.fits"),
        _rule("added", "NRS2", _NOW, "jwst_nirspec_readnoise_0016.fits"),
        _flat("replaced", "jwst_nirspec_fflat_0012.fits", "jwst_nirspec_fflat_0031.fits", "CLEAR"),
        _flat("added", None, "jwst_nirspec_fflat_0032.fits", "F070LP"),
    )
    delivered = (now - timedelta(days=2)).astimezone(UTC).isoformat()
    catalog = {
        "jwst_nirspec_fflat_0031.fits": FileInfo(
            "jwst_nirspec_fflat_0031.fits", pedigree="INFLIGHT 2022-07-01 2022-07-20", change_level="SEVERE",
            description="Fixed-slit F-flat from commissioning data; replaces the ground-test flat.",
            deliverer="NIRSpec team (sample)", delivery_date=delivered),
        "jwst_nirspec_fflat_0032.fits": FileInfo(
            "jwst_nirspec_fflat_0032.fits", pedigree="INFLIGHT 2022-07-01 2022-07-20", change_level="MODERATE",
            description="First F070LP fixed-slit F-flat.", deliverer="NIRSpec team (sample)",
            delivery_date=delivered),
    }
    activation = Activation(
        date=now.astimezone(UTC).isoformat(), context="jwst_0542.pmap",
        description="SAMPLE NOTICE (crdswatch send-test): READPATT NRSRAPIDD1/D2/D6 added to the NIRSpec "
        "readnoise rules; new fixed-slit F-flats.",
    )
    diff = ActivationDiff("jwst", "https://jwst-crds.stsci.edu", "latest", activation, "jwst_0541.pmap",
                          changes, catalog)
    return Notice("sample", (diff,), "this is a test notice sent by crdswatch send-test",
                  unsubscribe_url=None, digest="immediate")
