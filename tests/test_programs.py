"""Program subscriptions: the server's affected datasets, asked for until computed, told per program.

Real peers only: the replay CRDS server answers get_affected_datasets from crdswatch's own
bestrefs over its bundled dataset headers (and "not computed yet" to the first K calls of each
switch), the real daemon polls it, works off its lookups and drains into the STARTTLS SMTP sink;
the real `crds` client is pointed at the same replay server.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crdswatch.app.affected import backoff_delay
from crdswatch.devtools.replay import ReplayServer
from crdswatch.devtools.replay_state import bundled_datasets
from crdswatch.errors import RpcError
from crdswatch.limits import Limits
from crdswatch.notices.codec import subscriber_from_json
from crdswatch.notices.programs import (
    AffectedDatasets,
    affected_from_result,
    affected_notice,
    is_not_ready,
    program_hits,
    program_of,
    programs_only,
)
from crdswatch.notices.subscriptions import subscription_from_config
from crdswatch.sources.crds_rpc import CrdsRpcClient
from crdswatch.store import Store
from tests.support.daemon_env import Clock, make_daemon, write_config
from tests.support.fixtures_channels import smtp_pki, smtp_server  # noqa: F401
from tests.support.lists_env import next_mail, raw_headers, to
from tests.support.smtp_server import ReceivedMessage, SmtpTestServer

NOW = datetime(2019, 8, 1, 12, 0, tzinfo=UTC)
P1234, P2345, P9999, MIRI = "p1234@example.org", "p2345@example.org", "p9999@example.org", "miri@example.org"
SUBSCRIBERS = f"""
[[subscribers]]
name = "p1234"
email = ["{P1234}"]
programs = ["1234"]

[[subscribers]]
name = "p2345"
email = ["{P2345}"]
programs = ["02345", "3456"]

[[subscribers]]
name = "p9999"
email = ["{P9999}"]
programs = ["9999"]

[[subscribers]]
name = "miri"
email = ["{MIRI}"]
instruments = ["miri"]
"""
# Tries 2 and 3 wait 60 s then 120 s; the fourth failed try gives up.
LIMITS = "[limits]\naffected_attempts = 4\naffected_backoff = 60\naffected_backoff_max = 120\naffected_ids_shown = 4\n"


# -- pure ----------------------------------------------------------------------------------------


def test_program_of_reads_jwst_ids_and_nothing_else() -> None:
    assert program_of("JW01234001001_02101_00001_MIRIFULONG") == "1234"
    assert program_of("jw02345002001_02101_00004_mirimage:JW02345002001_02101_00004_MIRIMAGE") == "2345"
    assert program_of("JW00001001001_02101_00001_NRS1") == "1"
    assert program_of("LA8Q99030:LA8Q99JCQ") is None  # HST: the proposal is not in the id as a number
    assert program_of("JW1234") is None
    ids = ["JW01234001001_02101_00001_NRS1", "JW02345001001_02101_00001_NRS1", "JW01234001001_02101_00002_NRS1"]
    assert program_hits(ids, {"1234", "9999"}) == {"1234": [ids[0], ids[2]]}


def test_the_servers_answer_is_validated_and_not_ready_is_recognised() -> None:
    ok = affected_from_result({"affected_ids": ["JW01234001001_02101_00001_NRS1", " ", "JW01234001001_02101_00001_NRS1"],
                               "bestrefs_status": 0, "old_context": "jwst_0500.pmap",
                               "new_context": "jwst_0501.pmap"}, "a", "b")
    assert ok.ids == ("JW01234001001_02101_00001_NRS1",) and ok.old_context == "jwst_0500.pmap"
    with pytest.raises(ValueError, match="could not read its results"):
        affected_from_result({"affected_ids": "FAILED: File not found"}, "a", "b")
    with pytest.raises(ValueError, match="not a list"):
        affected_from_result({"affected_ids": [1, 2]}, "a", "b")
    with pytest.raises(ValueError, match="not an object"):
        affected_from_result(["x"], "a", "b")
    assert is_not_ready("OtherError: No precomputed affected datasets results exist for old_context='a'")
    assert not is_not_ready("Unknown context 'jwst_9999.pmap'")


def test_notice_counts_every_id_lists_a_bounded_number_and_skips_unaffected_subscribers() -> None:
    sub = subscription_from_config("p", subscriber_from_json({"email": ["p@example.org"], "programs": ["01234", "2345"]}))
    ids = tuple(f"JW01234001001_02101_{n:05d}_NRS1" for n in range(1, 38)) + ("JW02345001001_02101_00001_NIS",)
    affected = AffectedDatasets("jwst_0540.pmap", "jwst_0541.pmap", ids)
    notice = affected_notice(sub, affected, observatory="jwst", server_url="https://jwst-crds.stsci.edu", shown=5,
                             public_url="https://crdswatch.example.org")
    assert notice is not None
    assert notice.subject == ("[CRDS JWST] jwst_0541.pmap: program 1234: 37 datasets get new references; "
                              "program 2345: 1 dataset gets new references")
    assert "program 1234: 37 datasets get new references" in notice.lines
    assert "  JW01234001001_02101_00005_NRS1" in notice.lines and "  ... and 32 more" in notice.lines
    assert "  JW01234001001_02101_00006_NRS1" not in notice.lines
    assert "Context: https://jwst-crds.stsci.edu/context_table/jwst_0541.pmap" in notice.lines
    assert "Archive: https://crdswatch.example.org/activations/jwst_0541.pmap" in notice.lines
    assert notice.reason == "subscriber 'p' follows programs 1234, 2345"
    other = subscription_from_config("q", subscriber_from_json({"email": ["q@example.org"], "programs": ["9999"]}))
    assert affected_notice(other, affected, observatory="jwst", server_url="https://s", shown=5) is None


def test_programs_only_subscribers_are_not_sent_every_activation() -> None:
    assert programs_only(subscription_from_config("p", subscriber_from_json({"email": ["p@x.org"], "programs": ["1234"]})))
    assert not programs_only(subscription_from_config("p", subscriber_from_json({"email": ["p@x.org"], "programs": ["1234"],
                                                            "instruments": ["miri"]})))
    assert not programs_only(subscription_from_config("p", subscriber_from_json({"email": ["p@x.org"]})))


def test_backoff_doubles_up_to_its_maximum() -> None:
    limits = Limits(affected_backoff=300, affected_backoff_max=3600)
    assert [backoff_delay(limits, n) for n in range(1, 8)] == [300, 600, 1200, 2400, 3600, 3600, 3600]


# -- the replay server's get_affected_datasets ------------------------------------------------------------


@pytest.fixture
def server(jwst_data: Path) -> Iterator[ReplayServer]:
    with ReplayServer(jwst_data / "mappings", jwst_data / "config" / "server_config", upto="jwst_0500.pmap",
                      affected_not_ready=2) as srv:
        yield srv


def _bestref_changed(jwst_data: Path, old: str, new: str) -> set[str]:
    """The same question asked directly of bestrefs, dataset by dataset (not through the server)."""
    from crdswatch.contexts.bestref import Rules, bestrefs
    from crdswatch.contexts.library import MappingLibrary

    rules = Rules(MappingLibrary.from_dir(jwst_data / "mappings"))
    a, b = rules.context(old), rules.context(new)
    return {i for i, h in bundled_datasets("jwst") if bestrefs(a, h).bestrefs != bestrefs(b, h).bestrefs}


async def test_replay_answers_not_computed_k_times_then_the_bestref_differences(
    server: ReplayServer, jwst_data: Path
) -> None:
    server.activate_next()  # jwst_0501: new MIRI imager distortion and filter offsets
    async with CrdsRpcClient(server.url, retries=0) as client:
        for _ in range(2):
            with pytest.raises(RpcError) as caught:
                await client.get_affected_datasets("jwst", "jwst_0500.pmap", "jwst_0501.pmap")
            assert is_not_ready(caught.value.server_message)
        result = await client.get_affected_datasets("jwst", "jwst_0500.pmap", "jwst_0501.pmap")
        again = await client.get_affected_datasets("jwst", None, None)  # the latest switch: the same one
        with pytest.raises(RpcError) as caught:  # not activated yet: not computed either
            await client.get_affected_datasets("jwst", "jwst_0501.pmap", "jwst_0502.pmap")
        assert is_not_ready(caught.value.server_message)
        with pytest.raises(RpcError, match="Unknown context"):
            await client.get_affected_datasets("jwst", "jwst_0500.pmap", "jwst_9999.pmap")
    ids = result["affected_ids"]
    assert set(ids) == _bestref_changed(jwst_data, "jwst_0500.pmap", "jwst_0501.pmap")
    assert ids and {program_of(i) for i in ids} == {"2345"}  # the imager and coronagraph exposures
    assert result["bestrefs_status"] == 0 and result["computation_dir"] == "jwst_0500_0501"
    assert (result["old_context"], result["new_context"]) == ("jwst_0500.pmap", "jwst_0501.pmap")
    assert again["affected_ids"] == ids


_PROBE = """
import json, os, sys
os.environ.update(CRDS_SERVER_URL=sys.argv[1], CRDS_PATH=sys.argv[2], CRDS_MODE="remote", CRDS_OBSERVATORY="jwst")
from crds.client import api
from crds.core import log
log.set_verbose(0)
api.set_crds_server(sys.argv[1])
out = []
for _ in range(3):
    try:
        found = api.get_affected_datasets("jwst", "jwst_0500.pmap", "jwst_0501.pmap")
        out.append({"ids": list(found.affected_ids), "status": found.bestrefs_status, "new": found.new_context})
    except Exception as exc:
        out.append({"error": str(exc)})
json.dump(out, sys.stdout)
"""


def test_the_crds_client_reads_our_affected_datasets(server: ReplayServer, tmp_path: Path) -> None:
    pytest.importorskip("crds")
    server.activate_next()
    done = subprocess.run([sys.executable, "-c", _PROBE, server.url, str(tmp_path / "crds")], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    first, second, third = json.loads(done.stdout)
    assert "No precomputed affected datasets results exist" in first["error"]
    assert "No precomputed affected datasets results exist" in second["error"]
    assert third["status"] == 0 and third["new"] == "jwst_0501.pmap"
    assert third["ids"] and {program_of(i) for i in third["ids"]} == {"2345"}


# -- end to end: the daemon ---------------------------------------------------------------------------


def text_of(message: ReceivedMessage) -> str:
    body = message.parsed().get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


def lookup_of(store: Store, context: str) -> tuple[str, int]:
    (seen,) = [a for a in store.list_activations(limit=50) if a.context == context]
    lookup = store.get_affected_lookup(seen.id)
    assert lookup is not None
    return lookup.status, lookup.attempts


async def test_daemon_waits_for_the_server_then_tells_each_program_only_its_own(
    server: ReplayServer, tmp_path: Path, smtp_server: SmtpTestServer,  # noqa: F811
) -> None:
    config = write_config(tmp_path, server_url=server.url, smtp=smtp_server, subscribers=SUBSCRIBERS, extra=LIMITS)
    clock = Clock(NOW)
    daemon = make_daemon(config, clock)
    try:
        await daemon.poll(daemon.watches[0])  # baseline jwst_0500
        server.activate_next()  # jwst_0501: MIRI imager files; program 2345's exposures
        await daemon.poll(daemon.watches[0])
        await next_mail(smtp_server, MIRI, 0)  # the activation notice went out at once
        assert to(smtp_server, P1234) == to(smtp_server, P2345) == []  # programs only: no activation notice
        await daemon.affected()  # try 1: not computed yet
        await daemon.affected()  # not due again yet: no call
        assert server.calls.count("get_affected_datasets") == 1
        assert lookup_of(daemon.store, "jwst_0501.pmap") == ("pending", 1)
    finally:
        await daemon.shutdown()

    # A restart: the lookup waits in the database with its backoff, not in the old process.
    clock.advance(seconds=61)
    daemon = make_daemon(config, clock)
    try:
        await daemon.affected()  # try 2: not computed yet (the server's second refusal)
        assert lookup_of(daemon.store, "jwst_0501.pmap") == ("pending", 2)
        clock.advance(seconds=121)
        await daemon.affected()  # try 3: computed; the notice is queued and drained
        assert lookup_of(daemon.store, "jwst_0501.pmap") == ("done", 3)
        mail = await next_mail(smtp_server, P2345, 0)
        subject = raw_headers(mail)["Subject"]
        assert subject == "[CRDS JWST] jwst_0501.pmap: program 2345: 10 datasets get new references"
        body = text_of(mail)
        assert "program 2345: 10 datasets get new references" in body
        assert "JW02345001001_02101_00001_MIRIMAGE" in body and "... and 6 more" in body
        assert "follows programs 2345, 3456" in " ".join(body.split())
        assert to(smtp_server, P1234) == [] and to(smtp_server, P9999) == []

        # Two more switches at once: 0502 (nothing of ours), 0504 (NIRISS SOSS: program 3456),
        # computed at the first try (the server's K refusals are per switch: 2 more each).
        server.state_model.affected_not_ready = 0
        server.activate("jwst_0504.pmap")
        await daemon.poll(daemon.watches[0])
        await daemon.affected()
        assert lookup_of(daemon.store, "jwst_0502.pmap") == ("done", 1)
        mail = await next_mail(smtp_server, P2345, 1)
        assert raw_headers(mail)["Subject"] == "[CRDS JWST] jwst_0504.pmap: program 3456: 6 datasets get new references"
        assert to(smtp_server, P1234) == [] and len(to(smtp_server, P2345)) == 2

        # A server that never computes it: after affected_attempts tries, the followers are told so.
        server.state_model.affected_not_ready = 100
        server.activate("jwst_0508.pmap")  # MIRI MRS (1234) and imager (2345) exposures change
        await daemon.poll(daemon.watches[0])
        for wait in (0, 61, 121, 121):
            clock.advance(seconds=wait)
            await daemon.affected()
        assert lookup_of(daemon.store, "jwst_0508.pmap") == ("gave_up", 4)
        for address, seen in ((P1234, 0), (P2345, 2), (P9999, 0)):
            mail = await next_mail(smtp_server, address, seen)
            assert raw_headers(mail)["Subject"] == ("[CRDS JWST] jwst_0508.pmap: affected datasets not computed "
                                                    "by the server")
            text = " ".join(text_of(mail).split())
            assert "after 4 tries over 5 min" in text and "No precomputed affected datasets results exist" in text
        clock.advance(seconds=3600)
        await daemon.affected()  # given up is final: no more calls
        assert server.calls.count("get_affected_datasets") == 3 + 2 + 4
    finally:
        await daemon.shutdown()
