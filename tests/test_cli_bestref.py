"""`crdswatch bestref` on real FITS files written here with astropy, real JWST and HST rules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crdswatch.contexts.bestref import Rules, bestrefs
from crdswatch.contexts.library import MappingLibrary
from crdswatch.devtools.bundled import extract_bundled
from crdswatch.devtools.replay import ReplayServer

fits = pytest.importorskip("astropy.io.fits")

MRS = {"INSTRUME": "MIRI", "EXP_TYPE": "MIR_MRS", "DETECTOR": "MIRIFULONG", "CHANNEL": "34", "BAND": "LONG",
       "READPATT": "SLOW", "SUBARRAY": "FULL", "DATE-OBS": "2019-03-01", "TIME-OBS": "00:00:00"}
ACS = {"INSTRUME": "ACS", "DETECTOR": "WFC", "CCDAMP": "ABCD", "CCDGAIN": 2.0, "DATE-OBS": "2008-01-01",
       "TIME-OBS": "12:00:00", "OBSTYPE": "IMAGING", "FILTER1": "F555W", "FILTER2": "CLEAR2L", "NAXIS1": 4144,
       "LTV1": 24.0, "LTV2": 0.0, "XCORNER": 0, "YCORNER": 0, "CCDCHIP": 1, "APERTURE": "WFC1",
       "BIASCORR": "PERFORM", "DARKCORR": "PERFORM", "FLASHCUR": "OFF"}


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CRDSWATCH_CACHE": str(cwd or Path.cwd())}
    return subprocess.run([sys.executable, "-m", "crdswatch", *args], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


def write_fits(path: Path, primary: dict[str, object], sci: dict[str, object] | None = None,
               shape: tuple[int, int] | None = None) -> Path:
    hdus = [fits.PrimaryHDU()]
    for key, value in primary.items():
        hdus[0].header[key] = value
    if sci is not None:
        import numpy as np

        data = np.zeros(shape, dtype=np.uint8) if shape else None
        hdus.append(fits.ImageHDU(data=data, name="SCI"))
        for key, value in sci.items():
            hdus[1].header[key] = value
    fits.HDUList(hdus).writeto(path)
    return path


@pytest.fixture(scope="module")
def hst_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return extract_bundled(tmp_path_factory.mktemp("hst"), observatory="hst")


def test_bestref_json_from_jwst_fits(jwst_data: Path, tmp_path: Path) -> None:
    dataset = write_fits(tmp_path / "jw01234001001_01101_00001_mirifulong_uncal.fits", MRS, {"BUNIT": "DN"})
    done = run("bestref", "jwst_0541.pmap", "--mappings", str(jwst_data / "mappings"), "--header", str(dataset),
               "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert set(data) == {"context", "instrument", "bestrefs", "errors"}
    expected = bestrefs(Rules(MappingLibrary.from_dir(jwst_data / "mappings")).context("jwst_0541.pmap"), MRS)
    assert data == expected.to_json()
    assert data["instrument"] == "miri"
    assert data["bestrefs"]["dark"].startswith("jwst_miri_dark_")  # an MRS dark, chosen by DETECTOR/READPATT
    assert data["bestrefs"]["psfmask"] in ("N/A", None)  # coronagraph masks are not the MRS's business
    assert all(data["bestrefs"][t] is None for t in data["errors"])


def test_bestref_text_and_reftype_filter_hst_fits(hst_data: Path, tmp_path: Path) -> None:
    dataset = write_fits(tmp_path / "j8bt06o6q_raw.fits", {k: v for k, v in ACS.items() if k != "NAXIS1"},
                         {"BUNIT": "COUNTS"}, shape=(2068, 4144))
    done = run("bestref", "hst_0729.pmap", "--mappings", str(hst_data / "mappings"), "--header", str(dataset),
               "--reftype", "BIASFILE", "--reftype", "darkfile", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert set(data["bestrefs"]) == {"biasfile", "darkfile"}
    assert data["bestrefs"]["darkfile"] and data["bestrefs"]["darkfile"].endswith("_drk.fits")
    text = run("bestref", "hst_0729.pmap", "--mappings", str(hst_data / "mappings"), "--header", str(dataset),
               "-t", "darkfile", cwd=tmp_path)
    assert text.returncode == 0 and "darkfile" in text.stdout and data["bestrefs"]["darkfile"] in text.stdout


def test_bestref_params_over_server(jwst_data: Path, tmp_path: Path) -> None:
    server = ReplayServer(jwst_data / "mappings", jwst_data / "config" / "server_config", None).start()
    try:
        args = [x for k, v in MRS.items() for x in ("-p", f"{k}={v}")]
        done = run("bestref", "jwst_0541.pmap", "--server", server.url, *args,
                   "-t", "dark", "--json", cwd=tmp_path)
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    local = run("bestref", "jwst_0541.pmap", "--mappings", str(jwst_data / "mappings"),
                *args, "-t", "dark", "--json", cwd=tmp_path)
    assert json.loads(done.stdout) == json.loads(local.stdout)


@pytest.mark.parametrize(("args", "message"), [
    (["--param", "INSTRUME=MIRI"], "exactly one of --mappings"),
    (["--mappings", "M"], "--param KEY=VALUE ... or as --header"),
    (["--mappings", "M", "--param", "NOEQUALS"], "expected KEY=VALUE"),
    (["--mappings", "M", "--header", "missing.fits"], "no such file"),
    (["--mappings", "M", "--param", "DETECTOR=WFC"], "Missing 'INSTRUME' keyword"),
    (["--mappings", "M", "--param", "INSTRUME=FOC"], "Unknown instrument 'foc'"),
])
def test_bestref_errors(hst_data: Path, tmp_path: Path, args: list[str], message: str) -> None:
    args = [str(hst_data / "mappings") if a == "M" else a for a in args]
    done = run("bestref", "hst_0729.pmap", *args, cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
