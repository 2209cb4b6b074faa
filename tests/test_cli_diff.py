"""`crdswatch diff` and `crdswatch history`: the command-line contract, run as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from crdswatch.devtools.bundled import crds_cache_layout
from crdswatch.sources.mapcache import MappingCache

CLI = [sys.executable, "-m", "crdswatch"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, env=env, check=False)


def test_diff_json_contract(jwst_mappings: Path) -> None:
    proc = run("diff", "jwst_0540.pmap", "jwst_0541.pmap", "--mappings", str(jwst_mappings), "--json")
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert data["old"] == "jwst_0540.pmap" and data["new"] == "jwst_0541.pmap"
    changes = data["changes"]
    assert len(changes) == 83
    required = {"old_mapping", "new_mapping", "match", "useafter", "action", "old_file", "new_file",
                "instrument", "reftype"}
    assert all(required <= set(c) for c in changes)
    rule = next(c for c in changes if c["old_file"] == "jwst_nirspec_dark_0022.fits" and c["action"] == "deleted")
    assert rule["old_mapping"] == "jwst_nirspec_dark_0028.rmap"
    assert rule["new_mapping"] == "jwst_nirspec_dark_0029.rmap"
    assert rule["match"] == ["NRS1", "NRS|NRSRAPID", "FULL", "1", "1", "2048", "2048"]
    assert rule["parameters"][:3] == ["DETECTOR", "READPATT", "SUBARRAY"]
    assert rule["useafter"] == "2000-01-01 00:00:00"
    assert rule["new_file"] is None
    assert rule["instrument"] == "nirspec" and rule["reftype"] == "dark"
    imap = next(c for c in changes if c["old_mapping"] == "jwst_0540.pmap")
    assert imap["match"] == ["nirspec"] and imap["action"] == "replaced"
    assert (imap["old_file"], imap["new_file"]) == ("jwst_nirspec_0191.imap", "jwst_nirspec_0192.imap")
    assert imap["useafter"] is None
    refpix = [c for c in changes if c["reftype"] == "refpix" and c["level"] == "reference"]
    assert refpix and all(c["old_file"] == "N/A" or c["new_file"] == "N/A" for c in refpix)


def test_diff_equals_the_crds_command_line(jwst_data: Path, tmp_path: Path) -> None:
    """The real `crds diff` process on the same files prints exactly our `line`s."""
    root = crds_cache_layout(tmp_path / "crds", jwst_data)
    env = {**os.environ, "CRDS_PATH": str(root), "CRDS_MODE": "local", "CRDS_OBSERVATORY": "jwst",
           "CRDS_SERVER_URL": "https://jwst-crds.stsci.edu"}
    folder = root / "mappings" / "jwst"
    crds = subprocess.run(
        [sys.executable, "-m", "crds.diff", str(folder / "jwst_0530.pmap"), str(folder / "jwst_0541.pmap"),
         "--brief", "--squash-tuples"], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path, check=False,
    )
    assert crds.returncode == 1, crds.stderr[-2000:]
    ours = run("diff", "jwst_0530.pmap", "jwst_0541.pmap", "--mappings", str(root), "--json")
    assert ours.returncode == 1
    assert [c["line"] for c in json.loads(ours.stdout)["changes"]] == crds.stdout.splitlines()


def test_diff_text_is_grouped_by_instrument_and_type(jwst_mappings: Path) -> None:
    proc = run("diff", "jwst_0540.pmap", "jwst_0541.pmap", "--mappings", str(jwst_mappings))
    assert proc.returncode == 1
    out = proc.stdout
    assert out.startswith("jwst_0540.pmap -> jwst_0541.pmap: 83 changes")
    assert "NIRSPEC  jwst_nirspec_0191.imap -> jwst_nirspec_0192.imap\n" in out
    assert "  DARK  jwst_nirspec_dark_0028.rmap -> jwst_nirspec_dark_0029.rmap\n" in out
    assert "jwst_nirspec_dark_0022.fits" in out and "READPATT=NRS|NRSRAPID|NRSRAPIDD1" in out


def test_diff_exit_codes(jwst_mappings: Path, tmp_path: Path) -> None:
    same = run("diff", "jwst_0541.pmap", "jwst_0541.pmap", "--mappings", str(jwst_mappings), "--json")
    assert same.returncode == 0 and json.loads(same.stdout)["changes"] == []
    missing = run("diff", "jwst_0541.pmap", "jwst_9999.pmap", "--mappings", str(jwst_mappings))
    assert missing.returncode == 2 and "jwst_9999.pmap" in missing.stderr
    both = run("diff", "jwst_0540.pmap", "jwst_0541.pmap", "--mappings", str(jwst_mappings),
               "--server", "http://127.0.0.1:9")
    assert both.returncode == 2 and "exactly one" in both.stderr
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("jwst_0540.pmap", "jwst_0541.pmap"):
        (broken / name).write_text((jwst_mappings / name).read_text())
    (broken / "jwst_nirspec_0192.imap").write_text("header = {\nselector = eval('1')\n")
    (broken / "jwst_nirspec_0191.imap").write_text((jwst_mappings / "jwst_nirspec_0191.imap").read_text())
    bad = run("diff", "jwst_0540.pmap", "jwst_0541.pmap", "--mappings", str(broken))
    assert bad.returncode == 2
    assert "jwst_nirspec_0192.imap:" in bad.stderr and "Traceback" not in bad.stderr


def test_diff_does_not_load_network_or_database_stack(jwst_mappings: Path) -> None:
    code = (
        "import sys; from crdswatch.cli.main import main; sys.argv=['crdswatch','diff','jwst_0540.pmap',"
        f"'jwst_0541.pmap','--mappings',{str(jwst_mappings)!r}]\n"
        "try:\n    main()\nexcept SystemExit: pass\n"
        "heavy = [m for m in ('httpx','sqlalchemy','aiosmtplib','jinja2','pydantic','crds') if m in sys.modules]\n"
        "sys.stderr.write('HEAVY=' + ','.join(heavy))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert "HEAVY=" in proc.stderr
    assert proc.stderr.rsplit("HEAVY=", 1)[1].strip() == ""


def test_history_from_server_config(jwst_data: Path) -> None:
    config = str(jwst_data / "config" / "server_config")
    proc = run("history", "--server-config", config, "--mappings", str(jwst_data / "mappings"), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    rows = data["activations"]
    assert len(rows) == 150 and data["observatory"] == "jwst"
    assert rows[0]["context"] == "jwst.pmap" and rows[-1]["context"] == "jwst_0541.pmap"
    assert rows[-1]["date"] == "2019-07-30T15:06:02+00:00"
    assert rows[-1]["description"].startswith("As per Jira issues CRDS-287")
    assert rows[-1]["affected"] == {"nirspec": ["dark", "readnoise", "refpix", "superbias"]}
    assert [r["date"] for r in rows] == sorted(r["date"] for r in rows)
    text = run("history", "--server-config", config)
    assert text.returncode == 0 and "2019-07-30 15:06:02  jwst_0541.pmap" in text.stdout


@pytest.mark.parametrize("args", [["history"], ["history", "--server-config", "/nonexistent/server_config"]])
def test_history_errors_are_clear(args: list[str]) -> None:
    proc = run(*args)
    assert proc.returncode == 2 and proc.stderr.startswith("crdswatch: error:")


def test_diff_and_history_from_a_server(jwst_data: Path, jwst_mappings: Path, tmp_path: Path) -> None:
    """--server fetches (and verifies) only the mappings the diff needs, through the cache."""
    from crdswatch.devtools.replay import ReplayServer

    env = {**os.environ, "CRDSWATCH_CACHE": str(tmp_path / "cache")}
    with ReplayServer(jwst_mappings, jwst_data / "config" / "server_config", upto="jwst_0541.pmap") as srv:
        remote = run("diff", "jwst_0540.pmap", "jwst_0541.pmap", "--server", srv.url, "--json", env=env)
        local = run("diff", "jwst_0540.pmap", "jwst_0541.pmap", "--mappings", str(jwst_mappings), "--json")
        assert remote.returncode == 1, remote.stderr
        assert json.loads(remote.stdout) == json.loads(local.stdout)
        cached = MappingCache(tmp_path / "cache" / "mappings").names("jwst")
        assert "jwst_nirspec_dark_0029.rmap" in cached and len(cached) < 20  # only what differs
        history = run("history", "--server", srv.url, "--json", env=env)
        assert history.returncode == 0, history.stderr
        assert json.loads(history.stdout)["activations"][-1]["context"] == "jwst_0541.pmap"
    # Mappings are immutable by name: with everything cached, no server is needed at all...
    offline = run("diff", "jwst_0540.pmap", "jwst_0541.pmap", "--server", "http://127.0.0.1:9", env=env)
    assert offline.returncode == 1
    # ...and with an empty cache an unreachable server is a clear error.
    env["CRDSWATCH_CACHE"] = str(tmp_path / "empty")
    down = run("diff", "jwst_0540.pmap", "jwst_0541.pmap", "--server", "http://127.0.0.1:9", env=env)
    assert down.returncode == 2 and down.stderr.splitlines()[-1].startswith("crdswatch: error: GET"), down.stderr


def test_fast_entry_and_full_cli_agree(jwst_mappings: Path) -> None:
    """`diff OLD NEW --mappings DIR` skips typer; any other spelling goes through it: same answer."""
    folder = str(jwst_mappings)
    fast = run("diff", "jwst_0530.pmap", "jwst_0541.pmap", "--mappings", folder, "--json")
    full = run("diff", "--json", "jwst_0530.pmap", "jwst_0541.pmap", "--mappings", folder)
    assert fast.returncode == full.returncode == 1
    assert fast.stdout == full.stdout
    for args in (["--mappings", folder], ["--mappings", folder, "--no-cache"]):
        a = run("diff", "jwst_0540.pmap", "jwst_0541.pmap", *args)
        b = run("diff", "jwst_0540.pmap", *args, "jwst_0541.pmap")
        assert (a.returncode, a.stdout) == (b.returncode, b.stdout)
    missing = run("diff", "jwst_0540.pmap", "jwst_9999.pmap", "--mappings", folder)
    assert missing.returncode == 2 and missing.stderr.startswith("crdswatch: error: jwst_9999.pmap")
    helped = run("diff", "--help")
    assert helped.returncode == 0 and "--mappings" in helped.stdout
    code = (
        "import sys; from crdswatch.cli.entry import main; sys.argv=['crdswatch','diff','jwst_0540.pmap',"
        f"'jwst_0541.pmap','--mappings',{folder!r},'--json']\n"
        "try:\n    main()\nexcept SystemExit: pass\n"
        "sys.stderr.write('LOADED=' + ','.join(m for m in ('typer','click','rich') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert proc.stderr.rsplit("LOADED=", 1)[1].strip() == ""


@pytest.mark.parametrize(
    "command",
    ["diff", "history", "replay-server", "run", "check-config", "outbox", "status", "subscribers", "preview", "send-test",
     "demo"],
)
def test_every_command_is_registered_and_teaches(command: str) -> None:
    proc = run(command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout and len(proc.stdout.splitlines()) > 5


def _crds_diff(root: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CRDS_PATH": str(root), "CRDS_MODE": "local", "CRDS_OBSERVATORY": "jwst",
           "CRDS_SERVER_URL": "https://jwst-crds.stsci.edu"}
    return subprocess.run([sys.executable, "-m", "crds.diff", *args], capture_output=True, text=True, timeout=300,
                          env=env, cwd=cwd, check=False)


@pytest.mark.parametrize("squash", [False, True])
def test_brief_prints_exactly_the_crds_diff_brief_lines(jwst_data: Path, tmp_path: Path, squash: bool) -> None:
    """Both spelled as crds takes them: paths to the two contexts, nested mappings from $CRDS_PATH."""
    root = crds_cache_layout(tmp_path / "crds", jwst_data)
    folder = root / "mappings" / "jwst"
    flags = ["--brief", "--squash-tuples"] if squash else ["--brief"]
    for old, new in (("jwst_0540.pmap", "jwst_0541.pmap"), ("jwst_0126.pmap", "jwst_0160.pmap")):
        paths = [str(folder / old), str(folder / new)]
        crds = _crds_diff(root, tmp_path, *paths, *flags)
        assert crds.returncode == 1, crds.stderr[-2000:]
        ours = run("diff", *paths, *flags, env={**os.environ, "CRDS_PATH": str(root)})
        assert ours.returncode == 1, ours.stderr
        assert ours.stdout == crds.stdout
        assert ours.stdout.startswith("jwst_" if squash else "(('jwst_")


def test_paths_are_accepted_as_crds_accepts_them(jwst_mappings: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "path" / "to"
    elsewhere.mkdir(parents=True)
    for name in ("jwst_0540.pmap", "jwst_0541.pmap"):
        (elsewhere / name).write_text((jwst_mappings / name).read_text())
    by_name = run("diff", "jwst_0540.pmap", "jwst_0541.pmap", "--mappings", str(jwst_mappings), "--json")
    env = {k: v for k, v in os.environ.items() if k != "CRDS_PATH"}
    by_path = run("diff", str(elsewhere / "jwst_0540.pmap"), str(elsewhere / "jwst_0541.pmap"),
                  "--mappings", str(jwst_mappings), "--json", env=env)
    assert by_path.returncode == 1, by_path.stderr
    assert json.loads(by_path.stdout) == json.loads(by_name.stdout)
    # Without --mappings the nested mappings are looked for next to the named files: a clear error here.
    alone = run("diff", str(elsewhere / "jwst_0540.pmap"), str(elsewhere / "jwst_0541.pmap"), env=env)
    assert alone.returncode == 2 and "jwst_nirspec_0191.imap" in alone.stderr and "Traceback" not in alone.stderr
    missing = run("diff", str(elsewhere / "jwst_0539.pmap"), "jwst_0541.pmap", "--mappings", str(jwst_mappings))
    assert missing.returncode == 2 and "jwst_0539.pmap: no such file" in missing.stderr
    remote = run("diff", str(elsewhere / "jwst_0540.pmap"), "jwst_0541.pmap", "--server", "http://127.0.0.1:9")
    assert remote.returncode == 2 and "not paths" in remote.stderr


def test_diff_text_has_one_header_per_reference_type(jwst_mappings: Path) -> None:
    out = run("diff", "jwst_0126.pmap", "jwst_0160.pmap", "--mappings", str(jwst_mappings)).stdout
    headers = [line.split()[0] for line in out.splitlines() if line.startswith("  ") and not line.startswith("   ")]
    sections: list[str] = []
    instrument = ""
    for line in out.splitlines():
        if line and not line.startswith(" ") and "->" in line and ":" not in line:
            instrument = line.split()[0]
        elif line.startswith("  ") and not line.startswith("   "):
            sections.append(f"{instrument} {line.split()[0]}")
    assert headers and len(sections) == len(set(sections)), Counter(sections).most_common(3)
    assert "FGS  jwst_fgs_0024.imap -> jwst_fgs_0034.imap" in out.splitlines()
    assert "  AREA  added jwst_fgs_area_0003.rmap" in out.splitlines()
    assert "  GAIN  jwst_fgs_gain_0003.rmap -> jwst_fgs_gain_0005.rmap" in out.splitlines()


RMAP_PAIRS = (("hst_acs_biasfile_0340.rmap", "hst_acs_biasfile_0341.rmap"),
              ("hst_wfc3_darkfile_0386.rmap", "hst_wfc3_darkfile_0387.rmap"))


@pytest.mark.parametrize("squash", [False, True])
def test_brief_equals_crds_on_real_hst_mappings(tmp_path: Path, squash: bool) -> None:
    """Real HST rmaps (numeric keys, wildcards, two-part USEAFTER): `--brief` still prints crds' lines."""
    import tarfile

    with tarfile.open(Path(__file__).parent / "data" / "hst-golden.tar.xz", "r:xz") as archive:
        archive.extractall(tmp_path / "hst", filter="data")
    root = tmp_path / "crds"
    (root / "mappings").mkdir(parents=True)
    (root / "mappings" / "hst").symlink_to(tmp_path / "hst" / "mappings")
    folder = root / "mappings" / "hst"
    env = {**os.environ, "CRDS_PATH": str(root), "CRDS_MODE": "local", "CRDS_OBSERVATORY": "hst",
           "CRDS_SERVER_URL": "https://hst-crds.stsci.edu"}
    flags = ["--brief", "--squash-tuples"] if squash else ["--brief"]
    # crds reads a context's whole closure; the rmaps that changed are complete on their own.
    for old, new in RMAP_PAIRS:
        paths = [str(folder / old), str(folder / new)]
        crds = subprocess.run([sys.executable, "-m", "crds.diff", *paths, *flags], capture_output=True, text=True,
                              timeout=300, env=env, cwd=tmp_path, check=False)
        assert crds.returncode == 1, crds.stderr[-2000:]
        ours = run("diff", *paths, *flags, env=env)
        assert ours.returncode == 1, ours.stderr
        assert ours.stdout == crds.stdout
