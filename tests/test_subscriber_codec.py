"""The stored subscriber has one owner: notices.codec encodes and decodes `SubscriberConfig`.

Rows already in a database keep decoding: the configured shape (`SubscriberSettings.model_dump`
without the name, secrets revealed, an origin), a list member's shape (the list's filter keys,
an e-mail channel, origin "list", the list, perhaps "own" and "delivery_disabled"), rows changed
by an unsubscribe link or the manage page, and rows older than some keys.
"""

from __future__ import annotations

import json
from typing import Any

from crdswatch.config import SubscriberSettings
from crdswatch.model import SubscriberConfig
from crdswatch.notices.codec import subscriber_from_json, subscriber_to_json

# What `store.configured.subscriber_json` wrote for a [[subscribers]] table (key order included).
CONFIGURED: dict[str, Any] = {
    "observatories": ["jwst"], "instruments": ["nirspec"], "reftypes": ["dark"], "change_levels": [],
    "pedigrees": [], "parameters": {"EXP_TYPE": ["NRS_IFU", "NRS_MSASPEC"]}, "states": ["latest"],
    "digest": "daily", "digest_hour": 9, "digest_weekday": "mon", "timezone": "Europe/Paris", "programs": ["1234"],
    "email": ["a@example.org", "b@example.org"], "datasets": [{"id": "ifu", "instrument": "nirspec"}],
    "slack_webhook": None, "webhook_url": "https://hooks.example.org/x", "webhook_secret": "whsec_c2VjcmV0",
    "origin": "config",
}

# A list member's row as `ListSpec.member_config` wrote it (only the list's filter keys).
LIST_MEMBER: dict[str, Any] = {
    "instruments": ["miri"], "reftypes": ["flat"], "digest": "weekly", "email": ["m@example.org"],
    "origin": "list", "list": "miri-news", "own": {"reftypes": ["flat"]}, "delivery_disabled": True,
}


def _roundtrip(data: dict[str, Any]) -> SubscriberConfig:
    sub = subscriber_from_json(json.loads(json.dumps(data)))
    assert subscriber_from_json(json.loads(json.dumps(subscriber_to_json(sub)))) == sub
    return sub


def test_a_configured_row_decodes_and_encodes_to_the_same_json() -> None:
    sub = _roundtrip(CONFIGURED)
    assert sub.email == ("a@example.org", "b@example.org") and sub.webhook_secret == "whsec_c2VjcmV0"
    assert sub.parameters == {"EXP_TYPE": ("NRS_IFU", "NRS_MSASPEC")} and sub.digest_hour == 9
    assert sub.origin == "config" and sub.list_name is None and not sub.unsubscribed and not sub.extra
    encoded = subscriber_to_json(sub)
    assert encoded == CONFIGURED and list(encoded) == list(CONFIGURED)


def test_the_configured_shape_is_what_subscriber_settings_dump() -> None:
    settings = SubscriberSettings.model_validate({"name": "x", "email": ["a@example.org"]})
    dumped = settings.model_dump(mode="python")
    dumped.pop("name")
    assert list(subscriber_to_json(SubscriberConfig(email=("a@example.org",)))) == list(dumped)


def test_a_list_member_row_decodes() -> None:
    sub = _roundtrip(LIST_MEMBER)
    assert (sub.origin, sub.list_name, sub.delivery_disabled) == ("list", "miri-news", True)
    assert sub.own == {"reftypes": ["flat"]} and sub.instruments == ("miri",) and sub.digest == "weekly"
    assert sub.states == ("latest",) and sub.observatories == () and sub.slack_webhook is None
    encoded = subscriber_to_json(sub)
    assert {k: encoded[k] for k in LIST_MEMBER} == LIST_MEMBER


def test_rows_changed_by_links_and_the_manage_page_decode() -> None:
    sub = _roundtrip({**CONFIGURED, "unsubscribed": ["email:a@example.org", "webhook"], "left": True})
    assert sub.unsubscribed == ("email:a@example.org", "webhook") and sub.left
    assert subscriber_to_json(sub)["unsubscribed"] == ["email:a@example.org", "webhook"]


def test_old_and_odd_rows_decode_by_the_readers_fallbacks() -> None:
    # Older than "origin", "states" and the digest keys; nulls where a value was never set.
    sub = _roundtrip({"email": ["old@example.org"], "states": None, "digest": None, "digest_hour": None,
                      "timezone": "", "digest_weekday": None, "programs": ["01234"], "unsubscribed": None,
                      "own": "not a table", "datasets": [{"fits": "/data/x.fits"}, "not a table"], "list": ""})
    assert sub == SubscriberConfig(email=("old@example.org",), programs=("01234",),
                                   datasets=({"fits": "/data/x.fits"},))
    assert subscriber_from_json({}) == SubscriberConfig()


def test_unknown_keys_survive_a_rewrite() -> None:
    # The first store contract's shape ("channels"/"filters"), read by nothing, kept as it was.
    legacy = {"channels": ["slack"], "filters": {"instrument": ["acs"]}}
    sub = _roundtrip(legacy)
    assert sub.extra == legacy and sub.email == () and sub.slack_webhook is None
    encoded = subscriber_to_json(sub)
    assert {k: encoded[k] for k in legacy} == legacy
