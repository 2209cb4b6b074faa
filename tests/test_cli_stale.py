"""`crdswatch stale` on real FITS files written here with astropy, against real JWST and HST rules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from crdswatch.contexts.bestref import Rules, bestrefs
from crdswatch.contexts.library import MappingLibrary
from crdswatch.devtools.bundled import extract_bundled

fits = pytest.importorskip("astropy.io.fits")

MRS = {"INSTRUME": "MIRI", "EXP_TYPE": "MIR_MRS", "DETECTOR": "MIRIFULONG", "CHANNEL": "34", "BAND": "LONG",
       "READPATT": "SLOW", "SUBARRAY": "FULL", "DATE-OBS": "2019-03-01", "TIME-OBS": "00:00:00"}
ACS = {"INSTRUME": "ACS", "DETECTOR": "WFC", "CCDAMP": "ABCD", "CCDGAIN": 2.0, "DATE-OBS": "2008-01-01",
       "TIME-OBS": "12:00:00", "OBSTYPE": "IMAGING", "FILTER1": "F555W", "FILTER2": "CLEAR2L", "APERTURE": "WFC1",
       "CCDCHIP": 1, "BIASCORR": "PERFORM", "DARKCORR": "PERFORM", "FLASHCUR": "OFF", "PCTECORR": "PERFORM"}


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CRDSWATCH_CACHE": str(cwd)}
    return subprocess.run([sys.executable, "-m", "crdswatch", "stale", *args], capture_output=True, text=True,
                          env=env, timeout=180, check=False)


def processed(path: Path, mappings: Path, context: str, params: dict[str, Any], observatory: str) -> dict[str, str]:
    """A dataset as the pipeline leaves it: CRDS_CTX and every reference it used recorded."""
    chosen = bestrefs(Rules(MappingLibrary.from_dir(mappings)).context(context), params).bestrefs
    hdu = fits.PrimaryHDU()
    for key, value in params.items():
        hdu.header[key] = value
    hdu.header["CRDS_CTX"] = context
    recorded: dict[str, str] = {}
    for reftype, file in chosen.items():
        if not file:
            continue
        if observatory == "jwst":
            key, value = f"R_{reftype.upper()}"[:8], file if file == "N/A" else "crds://" + file
        else:
            key, value = reftype.upper(), file if file == "N/A" else "jref$" + file
        hdu.header[key] = value
        recorded[reftype] = file
    fits.HDUList([hdu]).writeto(path)
    return recorded


@pytest.fixture(scope="module")
def hst_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return extract_bundled(tmp_path_factory.mktemp("hst"), observatory="hst")


def test_stale_folder_jwst(jwst_data: Path, tmp_path: Path) -> None:
    mappings = jwst_data / "mappings"
    folder = tmp_path / "program"
    folder.mkdir()
    old = processed(folder / "old_uncal.fits", mappings, "jwst_0523.pmap", MRS, "jwst")
    processed(folder / "fresh_uncal.fits", mappings, "jwst_0541.pmap", MRS, "jwst")
    done = run(str(folder), "--context", "jwst_0541.pmap", "--mappings", str(mappings), "--json", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    data = json.loads(done.stdout)
    reports = {Path(r["file"]).name: r for r in data["files"]}
    assert reports["fresh_uncal.fits"]["stale"] == [] and reports["fresh_uncal.fits"]["checked"]
    stale = {s["reftype"]: s for s in reports["old_uncal.fits"]["stale"]}
    new = bestrefs(Rules(MappingLibrary.from_dir(mappings)).context("jwst_0541.pmap"), MRS).bestrefs
    assert set(stale) == {t for t, f in old.items() if new.get(t) and new[t] != f}
    assert stale["regions"]["recorded"] == "crds://jwst_miri_regions_0017.asdf"
    assert stale["regions"]["selected"] == "jwst_miri_regions_0025.asdf"
    assert stale["regions"]["changed_in"] == ["jwst_0531.pmap", "jwst_0540.pmap"]  # real activations
    assert "dark" not in stale  # the 0532 darks were imager darks
    fresh = run(str(folder / "fresh_uncal.fits"), "--context", "jwst_0541.pmap", "--mappings", str(mappings),
                cwd=tmp_path)
    assert fresh.returncode == 0 and "up to date" in fresh.stdout


def test_stale_hst_prefixed_names_default_context(hst_data: Path, tmp_path: Path) -> None:
    mappings = hst_data / "mappings"
    recorded = processed(tmp_path / "j8bt06o6q_raw.fits", mappings, "hst_0690.pmap", ACS, "hst")
    done = run(str(tmp_path / "j8bt06o6q_raw.fits"), "--mappings", str(mappings), "--json", cwd=tmp_path)
    data = json.loads(done.stdout)
    assert data["context"] == "hst_0729.pmap"  # the saved config's operational context
    new = bestrefs(Rules(MappingLibrary.from_dir(mappings)).context("hst_0729.pmap"), ACS).bestrefs
    expected = {t for t, f in recorded.items() if new.get(t) and new[t] != f}
    got = {s["reftype"] for s in data["files"][0]["stale"]}
    assert got == expected
    assert done.returncode == (1 if expected else 0)
    for item in data["files"][0]["stale"]:
        assert item["recorded"].startswith("jref$") and item["changed_in"], item


def test_stale_errors(jwst_data: Path, tmp_path: Path) -> None:
    (tmp_path / "broken.fits").write_bytes(b"not a fits file at all")
    done = run(str(tmp_path / "broken.fits"), "--context", "jwst_0541.pmap", "--mappings",
               str(jwst_data / "mappings"), cwd=tmp_path)
    assert done.returncode == 2 and "broken.fits" in done.stdout + done.stderr and "Traceback" not in done.stderr
    none = run(str(tmp_path / "empty_dir_missing"), "--mappings", str(jwst_data / "mappings"), cwd=tmp_path)
    assert none.returncode == 2 and "Traceback" not in none.stderr


def test_stale_over_server_defaults_to_its_latest_context(jwst_data: Path, tmp_path: Path) -> None:
    from crdswatch.devtools.replay import ReplayServer

    processed(tmp_path / "old_uncal.fits", jwst_data / "mappings", "jwst_0523.pmap", MRS, "jwst")
    with ReplayServer(jwst_data / "mappings", jwst_data / "config" / "server_config", upto="jwst_0541.pmap") as srv:
        done = run(str(tmp_path / "old_uncal.fits"), "--server", srv.url, "--json", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    data = json.loads(done.stdout)
    assert data["context"] == "jwst_0541.pmap"
    regions = next(s for s in data["files"][0]["stale"] if s["reftype"] == "regions")
    assert regions["selected"] == "jwst_miri_regions_0025.asdf"
    assert regions["changed_in"] == ["jwst_0531.pmap", "jwst_0540.pmap"]
