"""Operational truth, as a new operator meets it: `since` as documented, config-defined subscribers,
reverts in `preview`, `diff` of mappings of different kinds."""

from __future__ import annotations

import asyncio
from pathlib import Path

from crdswatch.app.poll import Watch, _baseline, poll_once
from crdswatch.config import load_settings
from crdswatch.contexts.history import load_server_config
from crdswatch.devtools.replay import ReplayServer
from crdswatch.sources.crds import CrdsSource
from crdswatch.store import Store
from tests.support.daemon_env import Clock, cli, make_daemon, write_config
from tests.test_service import NOW
from tests.test_watcher import server, store  # noqa: F401 - fixtures


def history(jwst_server_config: Path) -> list[str]:
    return [a.context for a in load_server_config(jwst_server_config).activations()]


# -- since ------------------------------------------------------------------------------------------

def test_since_a_date_alone_and_the_first_activation(jwst_server_config: Path) -> None:
    acts = load_server_config(jwst_server_config).activations()
    names = [a.context for a in acts]
    # "2018-11-01", as the example config documents it: the first activation on or after that day.
    base, todo = _baseline(acts, acts[-1].context, "2018-11-01")
    assert base is not None and base.context == "jwst_0495.pmap"  # the last one before the date
    assert [p.activation.context for p in todo] == names[names.index("jwst_0497.pmap"):]
    # jwst.pmap, the very first activation, names a start too
    base, todo = _baseline(acts, acts[-1].context, "jwst.pmap")
    assert base is not None and base.context == "jwst.pmap" and len(todo) == len(acts) - 1


def test_since_jwst_pmap_and_dates_pass_validation(tmp_path: Path) -> None:
    for since in ("jwst.pmap", "2024-05-01", "2024-05-01T12:00:00Z", "2024-05-01 12:00"):
        config = write_config(tmp_path, server_url="http://127.0.0.1:1", source_extra=f'since = "{since}"')
        assert load_settings(config).sources[0].since == since
    config = write_config(tmp_path, server_url="http://127.0.0.1:1", source_extra='since = "2024-13-01"')
    done = cli("check-config", "--offline", "--config", str(config))
    assert done.returncode == 2 and "sources[0].since" in done.stderr and "2024-13-01" in done.stderr


async def test_since_a_date_backfills_through_a_real_poll(
    store: Store, server: ReplayServer, tmp_path: Path,  # noqa: F811
) -> None:
    src = CrdsSource(server.url, "jwst", tmp_path / "cache", timeout=10)
    try:
        report = await poll_once(Watch(src, since="2018-12-01"), store, NOW)
    finally:
        await src.aclose()
    assert report.processed == ["jwst_0499.pmap", "jwst_0500.pmap"]


# -- subscribers remove ---------------------------------------------------------------------------

def test_removing_a_config_defined_subscriber_is_refused_naming_the_file(tmp_path: Path) -> None:
    config = write_config(tmp_path, server_url="http://127.0.0.1:1", subscribers="""
[[subscribers]]
name = "from-file"
slack_webhook = "https://hooks.slack.invalid/x"
""")
    c = ("--config", str(config))
    assert cli("subscribers", "add", "from-cli", "--slack-webhook", "https://hooks.slack.invalid/y", *c).returncode == 0
    done = cli("subscribers", "remove", "from-file", *c)
    assert done.returncode == 2
    assert f"defined in {config}" in done.stderr and "subscribers[0]" in done.stderr, done.stderr
    assert "from-file" in cli("subscribers", "list", *c).stdout
    done = cli("subscribers", "remove", "from-cli", *c)
    assert done.returncode == 0 and "removed" in done.stdout
    assert "from-cli" not in cli("subscribers", "list", *c).stdout


# -- preview and diff -------------------------------------------------------------------------------

def test_preview_shows_a_revert_as_a_revert(tmp_path: Path, replay: ReplayServer) -> None:
    config = write_config(tmp_path, server_url=replay.url, subscribers="""
[[subscribers]]
name = "all"
slack_webhook = "https://hooks.slack.invalid/x"
""")

    async def run() -> None:
        daemon = make_daemon(config, Clock(NOW))
        try:
            await daemon.poll(daemon.watches[0])
            replay.activate_next()  # jwst_0501
            await daemon.poll(daemon.watches[0])
            replay.activate("jwst_0500.pmap")  # rolled back
            await daemon.poll(daemon.watches[0])
        finally:
            await daemon.shutdown()

    asyncio.run(run())
    done = cli("preview", "--subscriber", "all", "--activation", "jwst_0500.pmap", "--config", str(config))
    assert done.returncode == 0, done.stderr
    subject = done.stdout.splitlines()[0]
    assert "revert from jwst_0501.pmap" in subject, subject
    webhook = cli("preview", "--subscriber", "all", "--activation", "jwst_0500.pmap", "--format", "json",
                  "--config", str(config))
    assert '"revert": true' in webhook.stdout.replace(" ", "").replace('"revert":true', '"revert": true')


def test_diff_refuses_a_context_against_an_instrument_mapping(jwst_mappings: Path) -> None:
    for extra in ((), ("--brief",)):
        done = cli("diff", "jwst_0500.pmap", "jwst_miri_0100.imap", "--mappings", str(jwst_mappings), *extra)
        assert done.returncode == 2 and "cannot compare" in done.stderr, done
        assert done.stdout == ""
