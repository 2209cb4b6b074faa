"""The tokens' JSON bodies: byte for byte what json.dumps writes (old links must keep verifying)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from crdswatch.notices.unsubscribe import compact_json


@given(st.lists(st.one_of(st.text(), st.integers(min_value=-(2**63), max_value=2**63)), max_size=4))
def test_compact_json_is_json_dumps(items: list[str | int]) -> None:
    assert compact_json(items) == json.dumps(items, separators=(",", ":"))
