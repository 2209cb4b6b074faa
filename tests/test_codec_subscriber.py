"""notices.codec.subscriber_from_json reads only the keys present, exactly as the plain reading
of every key did (kept here as the oracle); any JSON a row may hold."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crdswatch.model import SubscriberConfig
from crdswatch.notices.codec import _SETTINGS_KEYS, _STATE_KEYS, _strings, _text, subscriber_from_json


def reference(data: Mapping[str, Any]) -> SubscriberConfig:
    """The stored subscriber of a `subscribers.config` value, any shape it was written in."""
    params = data.get("parameters") or {}
    own = data.get("own")
    return SubscriberConfig(
        email=_strings(data.get("email")),
        slack_webhook=_text(data.get("slack_webhook")),
        webhook_url=_text(data.get("webhook_url")),
        webhook_secret=_text(data.get("webhook_secret")),
        observatories=_strings(data.get("observatories")),
        instruments=_strings(data.get("instruments")),
        reftypes=_strings(data.get("reftypes")),
        change_levels=_strings(data.get("change_levels")),
        pedigrees=_strings(data.get("pedigrees")),
        parameters={str(k): _strings(vs) for k, vs in params.items()} if isinstance(params, Mapping) else {},
        states=_strings(data.get("states")) or ("latest",),
        digest=str(data.get("digest") or "immediate"),
        digest_hour=8 if data.get("digest_hour") is None else int(data["digest_hour"]),
        digest_weekday=str(data.get("digest_weekday") or "mon"),
        timezone=str(data.get("timezone") or "UTC"),
        programs=_strings(data.get("programs")),
        datasets=tuple(dict(d) for d in data.get("datasets") or () if isinstance(d, Mapping)),
        origin=_text(data.get("origin")),
        list_name=_text(data.get("list")) if data.get("list") else None,
        own=dict(own) if isinstance(own, Mapping) else {},
        delivery_disabled=bool(data.get("delivery_disabled")),
        left=bool(data.get("left")),
        unsubscribed=_strings(data.get("unsubscribed")),
        extra={k: v for k, v in data.items() if k not in _STATE_KEYS and k not in _SETTINGS_KEYS},
    )


_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 30), st.text(max_size=5))
_VALUES = st.one_of(_SCALARS, st.lists(_SCALARS, max_size=3), st.dictionaries(st.text(max_size=3), st.one_of(_SCALARS, st.lists(_SCALARS, max_size=2)), max_size=3),
                    st.lists(st.dictionaries(st.text(max_size=2), _SCALARS, max_size=2), max_size=2))
_KEYS = st.sampled_from(sorted({*_SETTINGS_KEYS, *_STATE_KEYS, "extra_key", "v"}))


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])  # a shared 2-core machine
@given(st.dictionaries(_KEYS, _VALUES, max_size=8))
def test_reading_only_the_keys_present_is_the_plain_reading(data: dict[str, Any]) -> None:
    try:
        expected: SubscriberConfig | type[Exception] = reference(data)
    except Exception as exc:  # noqa: BLE001 - the same kind of failure is expected
        expected = type(exc)
    try:
        got: SubscriberConfig | type[Exception] = subscriber_from_json(data)
    except Exception as exc:  # noqa: BLE001
        got = type(exc)
    if isinstance(expected, type):
        # A malformed row fails either way; with several bad keys, which one fails first may differ.
        assert isinstance(got, type), got
    else:
        assert got == expected


def test_a_typical_row() -> None:
    row = {"email": ["a@x.example"], "instruments": ["nirspec"], "origin": "cli", "list": "jwst-nirspec",
           "own": {"reftypes": ["flat"]}, "unsubscribed": ["email:b@x.example"], "future_key": 1}
    assert subscriber_from_json(row) == reference(row)
    assert subscriber_from_json(row).extra == {"future_key": 1}
