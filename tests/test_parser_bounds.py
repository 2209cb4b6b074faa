"""Issue 9, classes 4 and 5: only MappingSyntaxError leaves the parser (fuzzed from real mappings),
rule-key regular expressions cannot freeze anything, and `crdswatch diff` exits 2 on any error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crdswatch.contexts.mappings import parse_mapping
from crdswatch.errors import MappingSyntaxError
from tests.support.daemon_env import cli
from tests.support.hostile_crds import imap, pmap, rmap

ROOT = Path(__file__).resolve().parent.parent

HOSTILE = {
    "unary chain": "header = {'a': " + "-" * 200_000 + "1}\nselector = {}\n",
    "binary chain": "header = {'a': " + "1+" * 100_000 + "1}\nselector = {}\n",
    "attribute chain": "header = {'a': x" + ".y" * 100_000 + "}\nselector = {}\n",
    "nested parentheses": "header = {'a': " + "(" * 100_000 + "1" + ")" * 100_000 + "}\nselector = {}\n",
    "nested lists": "header = {'a': " + "[" * 5_000 + "]" * 5_000 + "}\nselector = {}\n",
    "huge decimal int": "header = {'a': " + "9" * 5_000 + "}\nselector = {}\n",
    "huge hex int": "header = {'a': 0x" + "f" * 5_000 + "}\nselector = {}\n",
    "unhashable key": "header = {(1, [2]): 3}\nselector = {}\n",
    "unhashable rule key": "header = {'parkey': (('A',),)}\nselector = Match({(1, [2]): 'x.fits'})\n",
    "50 MB string": "header = {'a': '" + "x" * 50_000_000 + "'}\nselector = {}\n",
    "300k keys": "header = {" + "".join(f"{i}:1," for i in range(300_000)) + "}\nselector = {}\n",
    "100k small keys": "header = {" + "".join(f"{i % 10}:1," for i in range(100_000)) + "}\nselector = {}\n",
    "NUL byte": "header = {'a': 1}\x00\nselector = {}\n",
    "lone surrogate": "header = {'a': '\ud800'}\nselector = {}\n",
    "escaped lone surrogate": "header = {'a': '\\ud800'}\nselector = {}\n",  # the escape, in the text
    "call": "header = {'a': __import__('os').system('true')}\nselector = {}\n",
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest.mark.parametrize("kind", ["imap", "rmap"])
def test_hostile_text_raises_only_the_typed_error(case: str, kind: str) -> None:
    with pytest.raises(MappingSyntaxError) as info:
        parse_mapping(f"jwst_x_0001.{kind}", HOSTILE[case])
    assert info.value.filename == f"jwst_x_0001.{kind}"


def test_graph_rules_are_syntax() -> None:
    with pytest.raises(MappingSyntaxError, match="may only name .rmap"):
        parse_mapping("jwst_nircam_0001.imap", imap("jwst_nircam_0001.imap", "nircam", {"DARK": "jwst_nircam_0001.imap"}))
    with pytest.raises(MappingSyntaxError, match="may only name .imap"):
        parse_mapping("jwst_0001.pmap", pmap("jwst_0001.pmap", {"NIRCAM": "jwst_0001.pmap"}))
    with pytest.raises(MappingSyntaxError, match="not a .rmap mapping name"):
        parse_mapping("jwst_nircam_0001.imap", imap("jwst_nircam_0001.imap", "nircam", {"DARK": "x\\r\\n.rmap"}))
    parse_mapping("jwst_nircam_0001.imap", imap("jwst_nircam_0001.imap", "nircam", {"DARK": "N/A"}))


# -- fuzz, seeded from real mappings (bounded: a fixed number of derandomized examples) ---------------------

_SEEDS = [
    pmap("jwst_0001.pmap", {"NIRCAM": "jwst_nircam_0001.imap", "MIRI": "jwst_miri_0001.imap"}),
    imap("jwst_nircam_0001.imap", "nircam", {"DARK": "jwst_nircam_dark_0001.rmap", "FLAT": "N/A"}),
    rmap("jwst_nircam_dark_0001.rmap", "nircam", "dark", {"NRCA1": "a.fits", "NRCB1": "b.fits"}),
]
_SEED_NAMES = ["jwst_0001.pmap", "jwst_nircam_0001.imap", "jwst_nircam_dark_0001.rmap"]
_REAL = ["jwst_0500.pmap", "jwst_nirspec_0192.imap", "jwst_nirspec_dark_0029.rmap", "jwst_miri_flat_0032.rmap"]
_PIECES = ["(", ")", "[", "]", "{", "}", ",", ":", "'", '"', "\\", "-", "+", ".", "*", "0x", "9" * 50,
           "Match(", "UseAfter(", "__import__", "lambda", "\x00", "\ud800", "\r", "\n", " ", "#",
           "'parkey'", "(" * 60, "-" * 60, "None", "1e999", "b''", "f''", "...", "**", ";"]


@pytest.fixture(scope="module")
def seeds(jwst_mappings: Path) -> list[tuple[str, str]]:
    real = [(n, (jwst_mappings / n).read_text()) for n in _REAL]
    return real + list(zip(_SEED_NAMES, _SEEDS))


@st.composite
def mutated(draw: st.DrawFn, seeds: list[tuple[str, str]]) -> tuple[str, str]:
    name, text = draw(st.sampled_from(seeds))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        how = draw(st.sampled_from(["insert", "delete", "repeat", "replace"]))
        piece = draw(st.one_of(st.sampled_from(_PIECES), st.text(max_size=8)))
        if how == "insert":
            text = text[:at] + piece + text[at:]
        elif how == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 200)):]
        elif how == "repeat":
            text = text[:at] + piece * draw(st.integers(2, 3000)) + text[at:]
        else:
            text = text[:at] + piece + text[at + len(piece):]
    return name, text


def test_fuzzed_real_mappings_raise_only_the_typed_error(seeds: list[tuple[str, str]]) -> None:
    @settings(max_examples=400, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(mutated(seeds))
    def check(case: tuple[str, str]) -> None:
        name, text = case
        try:
            parse_mapping(name, text)
        except MappingSyntaxError:
            pass

    check()


# -- class 4: rule-key regular expressions under a time budget --------------------------------------------


def test_pathological_rule_regex_does_not_freeze_matching() -> None:
    code = ("from crdswatch.notices.match import rule_value_matches as m\n"
            "assert m('((A|AA)+$)', 'A' * 60 + 'B') is True\n"  # ran out of time: counts as may-match
            "assert m('((A|AA)+$)', 'B') is True\n"  # and from then on, without trying again
            "assert m('(NRS.*)', 'NRS1') and not m('(NRS.*)', 'MIRI')\n")
    env = {"PYTHONPATH": str(ROOT / "daemon")}
    # With Python's re this takes longer than the age of the universe; the budget makes it ~1 s.
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr


# -- `crdswatch diff` exits 2 on any error ------------------------------------------------------------------


@pytest.mark.parametrize("case", ["attribute chain", "huge hex int", "unhashable key", "300k keys"])
def test_diff_exits_2_on_any_parser_error(tmp_path: Path, case: str) -> None:
    (tmp_path / "jwst_0001.pmap").write_text(_SEEDS[0])
    (tmp_path / "jwst_0002.pmap").write_text(HOSTILE[case])
    done = cli("diff", "jwst_0001.pmap", "jwst_0002.pmap", "--mappings", str(tmp_path), "--no-cache")
    assert done.returncode == 2, done.stderr[-500:]
    assert done.stderr.startswith("crdswatch: error: jwst_0002.pmap") and "Traceback" not in done.stderr


def test_diff_exits_2_when_a_folder_cannot_be_read(tmp_path: Path) -> None:
    (tmp_path / "jwst_0001.pmap").write_text(_SEEDS[0])
    (tmp_path / "jwst_0002.pmap").mkdir()  # a directory where a file should be: an OSError
    done = cli("diff", "jwst_0001.pmap", "jwst_0002.pmap", "--mappings", str(tmp_path), "--no-cache")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-500:]
