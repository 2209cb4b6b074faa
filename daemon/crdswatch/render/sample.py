"""An unmistakable sample notice from fixed data, for `crdswatch send-test` (pure).

It looks like a notice (a READPATT widening, a replaced and a new flat, one file without catalog
facts) so the subscriber sees the real layout, but nothing in it can be taken for a real
activation: the notice is marked `test` (subject `[crdswatch TEST]`, a banner in every channel),
names carry TEST instead of a serial number, and the server is under `.invalid`, which never
resolves.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from crdswatch.model import Action, Activation, ActivationDiff, Change, FileInfo, Notice

__all__ = ["SAMPLE_SERVER", "sample_notice"]

SAMPLE_SERVER = "https://crds-server.invalid"  # RFC 2606: cannot be a real server
_RMAP = ("jwst_nirspec_readnoise_TEST_a.rmap", "jwst_nirspec_readnoise_TEST_b.rmap")
_PARAMS = ("DETECTOR", "READPATT", "SUBARRAY")
_WAS = "NRSRAPID|NRS"
_NOW = "NRSRAPID|NRS|NRSRAPIDD1|NRSRAPIDD2|NRSRAPIDD6"
_FLAT = ("jwst_nirspec_fflat_TEST_a.rmap", "jwst_nirspec_fflat_TEST_b.rmap")


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
    """A NIRSpec-like activation 'now', marked as a test everywhere it shows."""
    changes = (
        _rule("deleted", "NRS1", _WAS, "jwst_nirspec_readnoise_TEST1.fits"),
        _rule("added", "NRS1", _NOW, "jwst_nirspec_readnoise_TEST1.fits"),
        _rule("deleted", "NRS2", _WAS, "jwst_nirspec_readnoise_TEST2.fits"),
        _rule("added", "NRS2", _NOW, "jwst_nirspec_readnoise_TEST2.fits"),
        _flat("replaced", "jwst_nirspec_fflat_TEST0.fits", "jwst_nirspec_fflat_TEST1.fits", "CLEAR"),
        _flat("added", None, "jwst_nirspec_fflat_TEST2.fits", "F070LP"),
    )
    delivered = (now - timedelta(days=2)).astimezone(UTC).isoformat()
    catalog = {
        "jwst_nirspec_fflat_TEST1.fits": FileInfo(
            "jwst_nirspec_fflat_TEST1.fits", pedigree="DUMMY (sample)", change_level="SEVERE",
            description="SAMPLE: a replaced fixed-slit F-flat, to show how replacements read.",
            deliverer="crdswatch send-test", delivery_date=delivered),
        "jwst_nirspec_fflat_TEST2.fits": FileInfo(
            "jwst_nirspec_fflat_TEST2.fits", pedigree="DUMMY (sample)", change_level="MODERATE",
            description="SAMPLE: a new file, to show how deliveries read.", deliverer="crdswatch send-test",
            delivery_date=delivered),
    }
    activation = Activation(
        date=now.astimezone(UTC).isoformat(), context="jwst_TEST.pmap",
        description="SAMPLE NOTICE sent by `crdswatch send-test` to check this channel: no CRDS context was "
        "activated. It shows a READPATT widening of readnoise rules and new fixed-slit F-flats.",
    )
    diff = ActivationDiff("jwst", SAMPLE_SERVER, "latest", activation, "jwst_TEST_previous.pmap", changes, catalog)
    return Notice("sample", (diff,), "this is a test notice sent by crdswatch send-test",
                  unsubscribe_url=None, digest="immediate", test=True)
