"""render.layout.wrap: greedy, within the width, every word kept in order (property tests)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from crdswatch.render.layout import wrap

_WORDS = st.lists(st.text(alphabet="abcdefgh|,:./", min_size=1, max_size=30), min_size=1, max_size=30)


@given(_WORDS, st.sampled_from(["", "  "]), st.sampled_from([None, "  ", "    "]), st.integers(20, 80))
def test_wrap_is_greedy_within_the_width_and_keeps_every_word(
    words: list[str], indent: str, subsequent: str | None, width: int
) -> None:
    text = " ".join(words)
    lines = wrap(text, indent, subsequent, width)
    more = indent if subsequent is None else subsequent
    assert "".join("".join(lines).split()) == "".join(words)  # nothing lost, nothing reordered
    assert lines[0].startswith(indent) and all(line.startswith(more) for line in lines[1:])
    for line in lines:
        body = line[len(more):] if line is not lines[0] else line[len(indent):]
        assert len(line) <= width or " " not in body.strip()  # only an unbreakable piece overflows
