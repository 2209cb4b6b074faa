"""Issue 9: a subscriber's instrument, reftype and parameter names are checked against what the
CRDS context contains, with a did-you-mean: from the real replay server when it answers, offline
from the mapping cache it filled, and "skipped" (a warning, not a failure) when neither exists."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

from crdswatch.app.names import check_names, offline_vocabulary
from crdswatch.devtools.replay import ReplayServer
from tests.support.daemon_env import cli, free_port, write_config

BAD = """
[[subscribers]]
name = "imaging"
slack_webhook = "https://hooks.slack.com/services/T0/B0/x"
instruments = ["nircma"]

[[subscribers]]
name = "flats"
slack_webhook = "https://hooks.slack.com/services/T0/B0/x"
instruments = ["nirspec"]
reftypes = ["flatt"]
parameters = { EXP_TPYE = ["NRS_IFU"] }

[[subscribers]]
name = "good"
slack_webhook = "https://hooks.slack.com/services/T0/B0/x"
instruments = ["nirspec", "miri"]
reftypes = ["flat", "dark"]
parameters = { EXP_TYPE = ["NRS_IFU"], "META.INSTRUMENT.DETECTOR" = ["NRS1"] }
"""


def _env(cache: Path) -> dict[str, str]:
    return {"CRDSWATCH_CACHE": str(cache)}


def _bad_names(out: dict[str, object]) -> dict[str, str]:
    checks = out["checks"]
    assert isinstance(checks, list)
    return {c["check"]: c["detail"] for c in checks if not c["ok"] and c["check"].startswith("names ")}


def test_check_config_reports_every_bad_name_from_the_server_then_offline(tmp_path: Path, replay: ReplayServer) -> None:
    cache = tmp_path / "cache"
    config = write_config(tmp_path, server_url=replay.url, subscribers=BAD)
    online = cli("check-config", "--config", str(config), "--json", env=_env(cache))
    assert online.returncode == 1, online.stdout + online.stderr
    out = json.loads(online.stdout)
    bad = _bad_names(out)
    assert bad == {
        "names subscribers[0] (imaging).instruments":
            "'nircma' is not an instrument of jwst_0500.pmap (did you mean 'nircam'?)",
        "names subscribers[1] (flats).reftypes":
            "'flatt' is not a reference type of jwst_0500.pmap for nirspec (did you mean 'flat'?)",
        "names subscribers[1] (flats).parameters":
            "'EXP_TPYE' is not a parameter the rules of jwst_0500.pmap for nirspec select on "
            "(did you mean 'EXP_TYPE'?)",
    }, bad
    notes = [c["detail"] for c in out["checks"] if c["check"] == "names"]
    assert notes == [f"jwst: names checked against jwst_0500.pmap from the server {replay.url}"]

    text = cli("check-config", "--config", str(config), env=_env(cache))
    assert text.returncode == 1 and "did you mean 'nircam'?" in text.stdout and "FAIL" in text.stdout

    # The server is gone: the mappings it served are in the cache, and the check runs from there.
    replay.stop()
    offline = cli("check-config", "--config", str(config), "--json", env=_env(cache))
    assert offline.returncode == 1
    out = json.loads(offline.stdout)
    assert _bad_names(out) == bad
    notes = [c["detail"] for c in out["checks"] if c["check"] == "names"]
    assert any("not usable" in n for n in notes), notes
    assert f"jwst: names checked against jwst_0500.pmap from the mapping cache {cache / 'mappings'} (offline)" in notes
    again = cli("check-config", "--config", str(config), "--offline", "--json", env=_env(cache))
    assert _bad_names(json.loads(again.stdout)) == bad


def test_subscribers_add_refuses_a_misspelt_name(tmp_path: Path, replay: ReplayServer) -> None:
    cache = tmp_path / "cache"
    config = write_config(tmp_path, server_url=replay.url)
    typo = cli("subscribers", "add", "ifu", "--config", str(config), "--slack-webhook", "https://hooks.slack.com/services/T0/B0/x",
               "--instrument", "nirspec", "--param", "EXP_TPYE=NRS_IFU", env=_env(cache))
    assert typo.returncode == 2
    assert "subscriber 'ifu'.parameters: 'EXP_TPYE'" in typo.stderr and "did you mean 'EXP_TYPE'?" in typo.stderr
    inst = cli("subscribers", "add", "img", "--config", str(config), "--slack-webhook", "https://hooks.slack.com/services/T0/B0/x",
               "--instrument", "nircma", env=_env(cache))
    assert inst.returncode == 2 and "did you mean 'nircam'?" in inst.stderr
    good = cli("subscribers", "add", "ifu", "--config", str(config), "--slack-webhook", "https://hooks.slack.com/services/T0/B0/x",
               "--instrument", "nirspec", "--reftype", "flat", "--param", "EXP_TYPE=NRS_IFU", env=_env(cache))
    assert good.returncode == 0, good.stderr
    assert "names checked against jwst_0500.pmap from the server" in good.stdout
    listed = cli("subscribers", "list", "--config", str(config), "--json", env=_env(cache))
    assert [s["name"] for s in json.loads(listed.stdout)] == ["ifu"]


def test_no_server_and_no_cache_skips_with_a_warning(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    config = write_config(tmp_path, server_url=dead, source_extra="", subscribers=BAD)
    config.write_text(config.read_text().replace('observatory = "jwst"', 'observatory = "roman"'))
    done = cli("check-config", "--config", str(config), "--offline", env=_env(tmp_path / "empty-cache"))
    assert done.returncode == 0, done.stdout + done.stderr  # nothing to check against: not a failure
    assert "roman: name validation skipped: no server reachable and no cached mappings" in done.stderr
    added = cli("subscribers", "add", "x", "--config", str(config), "--slack-webhook", "https://hooks.slack.com/services/T0/B0/x",
                "--instrument", "nircma", env=_env(tmp_path / "empty-cache"))
    assert added.returncode == 0 and "name validation skipped" in added.stderr


def test_offline_falls_back_to_the_bundled_mappings_and_only_warns(tmp_path: Path) -> None:
    """The bundled snapshot may predate a name the server has: its findings are warnings."""
    config = write_config(tmp_path, server_url=f"http://127.0.0.1:{free_port()}", subscribers=BAD)
    done = cli("check-config", "--config", str(config), "--offline", "--json", env=_env(tmp_path / "empty"))
    out = json.loads(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    warned = {c["check"]: c["detail"] for c in out["checks"] if c["check"].startswith("names ")}
    assert len(warned) == 3 and all(d.startswith("warning: ") for d in warned.values()), warned
    assert "did you mean 'nircam'?" in done.stderr
    notes = [c["detail"] for c in out["checks"] if c["check"] == "names"]
    assert len(notes) == 1 and "from the bundled mappings (offline)" in notes[0] and "warnings only" in notes[0]
    added = cli("subscribers", "add", "img", "--config", str(config), "--slack-webhook",
                "https://hooks.slack.com/services/T0/B0/x", "--instrument", "nircma", env=_env(tmp_path / "empty"))
    assert added.returncode == 0 and "warning: subscriber 'img'.instruments: 'nircma'" in added.stderr


def test_observatory_scoping_and_missing_mappings(jwst_mappings: Path) -> None:
    """A name is checked only against the observatories the subscriber selects; an rmap missing
    from an offline cache (and no other of its family) leaves those parameters unchecked."""
    names = sorted(os.listdir(jwst_mappings))
    texts = {n: (jwst_mappings / n).read_text(errors="replace") for n in names}
    full = offline_vocabulary("jwst", names, texts.get, "test")
    assert full is not None and "nirspec" in full.instruments

    f = SimpleNamespace(observatories=["hst"], instruments=["nircma"], reftypes=[], parameters={})
    assert check_names("x", f, {"jwst": full}) == []  # an hst subscriber: no hst names known
    f.observatories = []
    assert check_names("x", f, {"jwst": full})[0].endswith("(did you mean 'nircam'?)")

    rmaps = {n for n in names if n.startswith("jwst_nirspec_") and n.endswith(".rmap")}
    partial = offline_vocabulary("jwst", [n for n in names if n not in rmaps],
                                 lambda n: None if n in rmaps else texts.get(n), "test")
    assert partial is not None and "nirspec" not in partial.parameters and partial.missing
    f.instruments, f.parameters = ["nirspec"], {"EXP_TPYE": ["X"]}
    assert check_names("x", f, {"jwst": partial}) == []
    assert len(check_names("x", f, {"jwst": full})) == 1
