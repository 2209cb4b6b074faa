"""History parsing: both server date styles, row validation, safe server_config parsing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from crdswatch.contexts.history import (
    HistoryFormatError,
    activations_from_history,
    crds_decode,
    crds_encode,
    format_history_date,
    load_server_config,
    parse_history_date,
    parse_server_config,
)
from crdswatch.errors import ConfigError
from tests.support.crds_fixtures import crds_jwst_root

__all__ = ["crds_jwst_root"]


def test_both_date_styles_are_utc_aware() -> None:
    old = parse_history_date("2019-07-30 15:06:02")
    new = parse_history_date("2026-06-17 18:42:21.675150+00:00")
    assert old == datetime(2019, 7, 30, 15, 6, 2, tzinfo=UTC)
    assert new == datetime(2026, 6, 17, 18, 42, 21, 675150, tzinfo=UTC)
    assert old.tzinfo is not None and new.utcoffset() is not None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-06-17T18:42:21Z", datetime(2026, 6, 17, 18, 42, 21, tzinfo=UTC)),
        ("2026-06-17 20:42:21.5+02:00", datetime(2026, 6, 17, 18, 42, 21, 500000, tzinfo=UTC)),
        ("2026-06-17 18:42:21-0100", datetime(2026, 6, 17, 19, 42, 21, tzinfo=UTC)),
    ],
)
def test_other_iso_spellings(text: str, expected: datetime) -> None:
    assert parse_history_date(text) == expected


@pytest.mark.parametrize("bad", ["", "yesterday", "2019-13-01 00:00:00", "2019-07-30", "2019-07-30 15:06"])
def test_bad_dates_raise(bad: str) -> None:
    with pytest.raises(HistoryFormatError):
        parse_history_date(bad)


def test_format_round_trips_modern_style() -> None:
    when = datetime(2026, 6, 17, 18, 42, 21, 675150, tzinfo=UTC)
    assert format_history_date(when) == "2026-06-17 18:42:21.675150+00:00"
    assert parse_history_date(format_history_date(when)) == when


def test_activations_oldest_first_with_iso_dates() -> None:
    rows = [
        ["2026-06-17 18:42:21.675150+00:00", "jwst_1400.pmap", "newer"],
        ["2019-07-30 15:06:02", "jwst_0541.pmap", "older"],
    ]
    acts = activations_from_history(rows)
    assert [a.context for a in acts] == ["jwst_0541.pmap", "jwst_1400.pmap"]
    assert acts[0].date == "2019-07-30T15:06:02+00:00"
    assert acts[1].date == "2026-06-17T18:42:21.675150+00:00"
    assert acts[1].description == "newer"


@pytest.mark.parametrize(
    ("row", "needle"),
    [
        (["2019-07-30 15:06:02", "jwst_0541.imap", "x"], "not a .pmap"),
        (["not a date", "jwst_0541.pmap", "x"], "unrecognised history date"),
        (["2019-07-30 15:06:02"], "expected [date, context, description]"),
        ("jwst_0541.pmap", "expected [date, context, description]"),
        (["2019-07-30 15:06:02", "jwst_0541.pmap", 7], "description"),
    ],
)
def test_bad_rows_are_named(row: object, needle: str) -> None:
    good = ["2019-07-01 00:00:00", "jwst_0540.pmap", "fine"]
    with pytest.raises(HistoryFormatError) as info:
        activations_from_history([good, row])
    assert info.value.row_index == 1
    assert "row 1" in str(info.value) and needle in str(info.value)


def test_real_server_config(crds_jwst_root: Path) -> None:
    config = load_server_config(crds_jwst_root / "config" / "server_config")
    assert config.observatory == "jwst"
    assert config.default_context() == "jwst_0541.pmap"
    acts = config.activations()
    assert len(acts) == 150
    assert (acts[0].context, acts[-1].context) == ("jwst.pmap", "jwst_0541.pmap")
    assert all(a.date.endswith("+00:00") for a in acts)
    # Real reverts are kept: jwst_0175 and jwst_0167 were each activated twice.
    assert [a.context for a in acts].count("jwst_0175.pmap") == 2
    # download_metadata arrives crds_encoded in the file; it is decoded here.
    assert len(config.download_metadata) == 5718
    assert config.download_metadata["jwst.pmap"] == {
        "sha1sum": "caf080abe09236165885f383045c59e8957a80ce", "size": "392",
    }


@pytest.mark.parametrize(
    "text",
    ["__import__('os').system('echo pwned')", "{'a': open('/etc/passwd').read()}", "{'a': [1, 2"],
)
def test_server_config_is_never_evaluated(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_server_config(text, source="evil")


def test_server_config_must_be_a_dict_with_valid_history() -> None:
    with pytest.raises(ConfigError, match="expected a dict"):
        parse_server_config("[1, 2]")
    with pytest.raises(HistoryFormatError, match="row 0"):
        parse_server_config("{'context_history': [['2019-01-01 00:00:00', 'x.txt', '']]}")


def test_crds_encoding_round_trip_and_crds_payload() -> None:
    obj = {"a": ["b", 1], "c": {"d": None}}
    assert crds_decode(crds_encode(obj)) == obj
    assert crds_decode(obj) is obj
    # Produced by crds.client.proxy.crds_encode (crds 14); the crds client decoding *our* encoding
    # is covered by test_replay_server's real-client probe.
    from_crds = {
        "crds_encoded": "1.0",
        "crds_payload": "H4sIADQHBWsC/6tWSs7PK0mtKFGyUlDKKi8uiTcwNTHUK8hNLFDSUVAqzqxKLQZKRRtbGukomBoZxNYCAE9ZJzkyAAAA",
    }
    assert crds_decode(from_crds) == {"context": "jwst_0541.pmap", "sizes": [392, 520]}
    with pytest.raises(ValueError):
        crds_decode({"crds_encoded": "1.0", "crds_payload": "!!notbase64"})
