"""contexts.canonical: the line-at-a-time reading of the layout crds writes gives exactly what the
full `ast` parse gives, or nothing (and then the full parse runs): the same Mapping for every real
mapping, and the same Mapping or the same error for edited and fuzzed ones."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crdswatch.contexts import canonical, mappings
from crdswatch.contexts.mappings import mapping_kind, parse_mapping
from crdswatch.errors import MappingSyntaxError

_REAL = ["jwst_0500.pmap", "jwst_nirspec_0192.imap", "jwst_nirspec_dark_0029.rmap", "jwst_miri_flat_0032.rmap",
         "jwst_nircam_readnoise_0003.rmap"]
_NUMBERS = """header = {
    'mapping' : 'REFERENCE',
    'name' : 'hst_acs_biasfile_0001.rmap',
    'parkey' : (('DETECTOR', 'CCDAMP', 'CCDGAIN', 'BINAXIS1', 'LTV1'), ('DATE-OBS', 'TIME-OBS')),
    'sha1sum' : '0000000000000000000000000000000000000000',
}

selector = Match({
    ('HRC', 'A', 1.0, 1062, -19.0) : UseAfter({
        '1992-01-01 00:00:00' : 'a_bia.fits',
    }),
    ('WFC', 'ABCD|AD', '1.0|2.0', 0, -3072) : UseAfter({
        '1992-01-01 00:00:00' : 'b_bia.fits',
        '2002-03-01 00:00:00' : 'c_bia.fits',
    }),
    ('(WFC|HRC)', 'B', 4.0, 2070, 22.0) : UseAfter({
        '1992-01-01 00:00:00' : 'd_bia.fits',
    }),
})
"""


@contextmanager
def _full_parse_only() -> Iterator[None]:
    with mock.patch.object(mappings, "_parse_canonical", lambda *_args: None):
        yield


def _outcome(name: str, text: str) -> tuple[Any, ...]:
    try:
        mapping = parse_mapping(name, text)
    except MappingSyntaxError as exc:
        return ("error", str(exc))
    return ("ok", mapping, repr(mapping.selector), list(mapping.header.items()))


def _same_as_full_parse(name: str, text: str) -> None:
    with _full_parse_only():
        full = _outcome(name, text)
    assert _outcome(name, text) == full


@pytest.fixture(scope="module")
def seeds(jwst_mappings: Path) -> list[tuple[str, str]]:
    return [(n, (jwst_mappings / n).read_text()) for n in _REAL] + [("hst_acs_biasfile_0001.rmap", _NUMBERS)]


def test_every_bundled_mapping_reads_as_the_full_parse(jwst_mappings: Path) -> None:
    read = 0
    for path in sorted(jwst_mappings.glob("*map")):
        text = path.read_text()
        fast = mappings._parse_canonical(path.name, mapping_kind(path.name), text)
        with _full_parse_only():
            full = parse_mapping(path.name, text)
        if fast is not None:
            read += 1
            assert fast == full and repr(fast.selector) == repr(full.selector), path.name
            assert list(fast.header.items()) == list(full.header.items()), path.name
    assert read > 2400  # all but the few with a comment section (a triple-quoted string)


def test_numbers_and_rule_keys_read_as_the_full_parse() -> None:
    fast = mappings._parse_canonical("hst_acs_biasfile_0001.rmap", "reference", _NUMBERS)
    with _full_parse_only():
        full = parse_mapping("hst_acs_biasfile_0001.rmap", _NUMBERS)
    assert fast is not None and fast == full and fast.selector is not None
    keys = [key for key, _choice in fast.selector.items]
    assert keys[0][0] == "(WFC|HRC)"  # crds' order: by the str() of each field
    assert keys[2] == ("WFC", "ABCD|AD", "1.0|2.0", 0, -3072) and keys[1][2:] == (1.0, 1062, -19.0)


# One edit of a real line each: what Python reads differently, or what the full parse rejects.
_EDITS = [
    ("'NRCA1', 'N/A', 'GENERIC') :", "'NRCA1' 'N/A', 'GENERIC') :"),  # implicit concatenation
    ("'jwst_nircam_readnoise_0010.fits',", "'jwst_nircam_readnoise_0010.fits'"),  # a missing comma
    ("})\n", "}),\n"),  # the selector becomes a tuple
    ("})\n", "}\n"),  # a closer that does not match
    ("selector = Match({", " selector = Match({"),  # an indented statement
    ("selector = Match({", "selector = Bogus({"),  # an unknown selector
    ("selector = Match({", "selector = {"),  # an rmap selector that is no call
    ("selector = Match({", "comment = 'x'\nselector = Match({"),  # a comment section
    ("selector = Match({", "other = {}\nselector = Match({"),  # an unknown section
    ("('NRCA1', 'N/A', 'GENERIC')", "('NRCA1')"),  # a parenthesised string, not a tuple
    ("('NRCA1', 'N/A', 'GENERIC')", "('NRCA1',)"),
    ("('NRCA1', 'N/A', 'GENERIC')", "()"),
    ("('NRCA1', 'N/A', 'GENERIC')", "('NRCB1', 'N/A', 'GENERIC')"),  # a repeated key: last value, first place
    ("('NRCA1', 'N/A', 'GENERIC')", "('(NRC[A', 'N/A', 'GENERIC')"),  # a bad regular expression
    ("('NRCA1', 'N/A', 'GENERIC')", "('(NRCA1|NRCA2)', 'N/A', 'GENERIC')"),
    ("('NRCA1', 'N/A', 'GENERIC')", "(('NRCA1', 'NRCA2'), 'N/A', 'GENERIC')"),  # a match set
    ("('NRCA1', 'N/A', 'GENERIC')", "(1, -2.5, 0)"),
    ("('NRCA1', 'N/A', 'GENERIC')", "(01, 2, 3)"),  # Python's SyntaxError
    ("('NRCA1', 'N/A', 'GENERIC')", "(1e5, 0x1, 1_0)"),
    ("('NRCA1', 'N/A', 'GENERIC')", "(-(1), --1, +1)"),
    ("('NRCA1', 'N/A', 'GENERIC')", "(r'a', b'b', u'c')"),
    ("('NRCA1', 'N/A', 'GENERIC')", "('a' # comment\n, 'b')"),
    ("'jwst_nircam_readnoise_0010.fits',", "'jwst_nircam_readnoise_0010.fits',  # a comment"),
    ("'jwst_nircam_readnoise_0010.fits',", "('a.fits', 'b.fits'),"),  # a leaf that is not a name
    ("'jwst_nircam_readnoise_0010.fits',", "UseAfter({\n'2000-01-01' : 'x.fits',\n}),"),  # deeper than parkey
    ("'jwst_nircam_readnoise_0010.fits',", "{\n'a' : 'b',\n},"),  # a dict under a call
    ("'jwst_nircam_readnoise_0010.fits',", "'jwst\\x_0010.fits',"),  # an escape
    ("'jwst_nircam_readnoise_0010.fits',", "'jwst\u00e9_0010.fits',"),  # not ASCII
    ("'jwst_nircam_readnoise_0010.fits',", "'jwst\t_0010.fits',"),
    ("'jwst_nircam_readnoise_0010.fits',", "\t'x.fits',"),
    ("'jwst_nircam_readnoise_0010.fits',", "'x.fits',\r"),
    ("'jwst_nircam_readnoise_0010.fits',", "'''x.fits''',"),
    ("'jwst_nircam_readnoise_0010.fits',", '"x.fits",'),
    ("'jwst_nircam_readnoise_0010.fits',", "'x.fits',,"),
    ("'jwst_nircam_readnoise_0010.fits',", "'x.fits' ,\n    # a comment line\n"),
    ("    'filekind' : 'READNOISE',", "    'filekind' : ('READNOISE', ('A', ()), 'B',),"),
    ("    'filekind' : 'READNOISE',", "    'filekind' : Match({\n    }),"),  # a call in the header
    ("    'filekind' : 'READNOISE',", "    'filekind' : {\n    'a' : 'b'\n    },"),
    ("    'filekind' : 'READNOISE',", "    'filekind' : 'READNOISE', 'x' : 'y',"),
    ("    'filekind' : 'READNOISE',", "    'filekind' : " + "(" * 20 + "'x'" + ")" * 20 + ","),
    ("'parkey' : (('META.INSTRUMENT.DETECTOR', 'META.EXPOSURE.READPATT', 'META.SUBARRAY.NAME'),),",
     "'parkey' : ('META.INSTRUMENT.DETECTOR',),"),  # parkey not a tuple of tuples
    ("header = {", "header = Match({"),
    ("header = {", "header = {}\nheader = {"),  # a repeated section: the last one counts
    ("}\n\nselector", "}\nheader = {\n'parkey' : ((),),\n}\nselector"),
    ("}\n\nselector", "\nselector"),  # an unclosed header
]


@pytest.mark.parametrize(("old", "new"), _EDITS)
def test_edited_mappings_read_as_the_full_parse(jwst_mappings: Path, old: str, new: str) -> None:
    text = (jwst_mappings / "jwst_nircam_readnoise_0003.rmap").read_text()
    assert old in text
    _same_as_full_parse("jwst_nircam_readnoise_0003.rmap", text.replace(old, new, 1))


def test_pmap_graph_and_case_as_the_full_parse(jwst_mappings: Path) -> None:
    text = (jwst_mappings / "jwst_0500.pmap").read_text()
    for old, new in [("'MIRI' :", "'miri' :"), (".imap'", ".rmap'"), (".imap'", "',"), (".imap',", ".imap', 'x' : 'y',")]:
        _same_as_full_parse("jwst_0500.pmap", text.replace(old, new, 1))


_PIECES = ["(", ")", "{", "}", ",", ":", "'", '"', "\\", "-", ".", "0", "1", "01", "1.5", "\n", " ", "  ", "#",
           "\t", "=", "Match(", "UseAfter({", "})", "},", "'x'", "('a',)", "()", "r", "e5", "_", "selector = {",
           "header = {", "comment = ", "\n}\n", "**"]


@st.composite
def _edited(draw: st.DrawFn, seeds: list[tuple[str, str]]) -> tuple[str, str]:
    name, text = draw(st.sampled_from(seeds))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        how = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(st.sampled_from(_PIECES))
        if how == "insert":
            text = text[:at] + piece + text[at:]
        elif how == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 3)):]
        else:
            text = text[:at] + piece + text[at + len(piece):]
    return name, text


def test_fuzzed_mappings_read_as_the_full_parse(seeds: list[tuple[str, str]]) -> None:
    """Small edits where the layout is most fragile: every outcome (Mapping or error message) is the
    full parse's."""

    @settings(max_examples=600, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(_edited(seeds))
    def check(case: tuple[str, str]) -> None:
        _same_as_full_parse(*case)

    check()


def test_the_line_memo_is_bounded() -> None:
    canonical._MEMO.clear()
    with mock.patch.object(canonical, "_MEMO_MAX", 10):
        for i in range(5):
            text = "header = {\n" + "".join(f"    'k{i}_{j}' : 'v',\n" for j in range(20)) + "}\nselector = {\n}\n"
            assert canonical.read_sections(text) is not None
            assert len(canonical._MEMO) <= 10 + 24
    canonical.forget()  # what a poll does once its mappings are parsed
    assert not canonical._MEMO
