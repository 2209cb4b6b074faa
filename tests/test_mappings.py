"""The safe parser reads every real JWST mapping and rejects anything that would need executing."""

from __future__ import annotations

from pathlib import Path

import pytest

from crdswatch.contexts.library import MappingLibrary, observatory_of, resolve_mappings_dir
from crdswatch.contexts.mappings import Selector, parse_mapping
from crdswatch.errors import MappingSyntaxError, UnknownMappingError

RMAP = """header = {
    'classes' : ('Match', 'UseAfter'),
    'filekind' : 'DARK',
    'instrument' : 'NIRSPEC',
    'mapping' : 'REFERENCE',
    'name' : 'jwst_nirspec_dark_0001.rmap',
    'observatory' : 'JWST',
    'parkey' : (('META.INSTRUMENT.DETECTOR', 'META.EXPOSURE.READPATT'), ('META.OBSERVATION.DATE', 'META.OBSERVATION.TIME')),
    'sha1sum' : 'x',
}

comment = 'a comment'

selector = Match({
    ('NRS1', 'NRS|NRSRAPID') : UseAfter({
        '2000-01-01 00:00:00' : 'a.fits',
        '1999-01-01 00:00:00' : 'b.fits',
    }),
    ('NRS2', 'N/A') : 'N/A',
    ('ANY', '(NRS.*)') : UseAfter({'2001-01-01 00:00:00' : 'c.fits'}),
    ('NRS2', 'BETWEEN 1 5') : UseAfter({'2001-01-01 00:00:00' : 'd.fits'}),
    ('{NRS1}', 'NRS') : 'OMIT',
})
"""


def test_every_bundled_mapping_parses(jwst_mappings: Path) -> None:
    names = sorted(p.name for p in jwst_mappings.iterdir() if p.suffix in (".pmap", ".imap", ".rmap"))
    assert len(names) > 2400
    kinds = {parse_mapping(n, (jwst_mappings / n).read_text()).kind for n in names}
    assert kinds == {"pipeline", "instrument", "reference"}


def test_rmap_structure_and_crds_order() -> None:
    rmap = parse_mapping("jwst_nirspec_dark_0001.rmap", RMAP)
    assert rmap.kind == "reference" and rmap.comment == "a comment"
    assert rmap.instrument == "nirspec" and rmap.filekind == "dark"
    top = rmap.selector
    assert isinstance(top, Selector) and top.kind == "Match"
    assert top.parameters == ("META.INSTRUMENT.DETECTOR", "META.EXPOSURE.READPATT")
    nested = dict(top.items)[("NRS1", "NRS|NRSRAPID")]
    assert isinstance(nested, Selector) and nested.kind == "UseAfter"
    assert nested.parameters == ("META.OBSERVATION.DATE", "META.OBSERVATION.TIME")
    # crds keeps selections sorted by the text of their keys, whatever the file's order.
    assert [k for k, _ in nested.items] == ["1999-01-01 00:00:00", "2000-01-01 00:00:00"]
    assert dict(top.items)[("NRS2", "N/A")] == "N/A"
    assert sorted(top.files()) == ["N/A", "OMIT", "a.fits", "b.fits", "c.fits", "d.fits"]


def test_pmap_keys_are_case_insensitive(jwst_mappings: Path) -> None:
    pmap = parse_mapping("jwst_0541.pmap", (jwst_mappings / "jwst_0541.pmap").read_text())
    assert pmap.selections["nirspec"] == "jwst_nirspec_0192.imap"


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("header = {\n 'parkey': (('A',),),\n}\nselector = Match({'x' : 'y'\n", 4, "not valid mapping syntax"),
        ("header = {'parkey': (('A',),)}\nselector = Frobnicate({'x': 'y.fits'})\n", 2, "unknown selector 'Frobnicate'"),
        ("header = {'parkey': (('A',),)}\nimport os\nselector = Match({})\n", 2, "only 'header"),
        ("header = {'parkey': __import__('os').system('true')}\nselector = Match({})\n", 1, "call to __import__('os').system()"),
        ("header = {'parkey': (('A',),)}\nselector = Match({'x': open('/etc/passwd')})\n", 2, "unknown selector 'open'"),
        ("header = {'parkey': (('A',),)}\nselector = Match({'x': 'a' + 'b'})\n", 2, "BinOp is not allowed"),
        ("header = {'parkey': (('A',),)}\nselector = Match({'x': UseAfter({'d': 'f'})})\n", 2, "nested deeper"),
        ("header = {'parkey': (('A',),)}\nselector = Match({'(unclosed': 'f', '(a[)': 'g'})\n", 2, "bad regular expression"),
        ("header = {'parkey': (('A',),)}\n", None, "missing 'selector'"),
        ("header = {'parkey': (('A',),)}\nselector = Match({'x': 'f'}, extra=1)\n", 2, "takes exactly one dict"),
    ],
)
def test_bad_mappings_name_file_line_and_reason(text: str, line: int | None, reason: str) -> None:
    with pytest.raises(MappingSyntaxError) as caught:
        parse_mapping("jwst_miri_flat_0001.rmap", text)
    assert caught.value.filename == "jwst_miri_flat_0001.rmap"
    assert caught.value.line == line
    assert reason in str(caught.value)
    assert str(caught.value).startswith("jwst_miri_flat_0001.rmap")


def test_truncated_real_rmap_is_rejected(jwst_mappings: Path) -> None:
    text = (jwst_mappings / "jwst_nirspec_dark_0029.rmap").read_text()
    with pytest.raises(MappingSyntaxError, match="jwst_nirspec_dark_0029.rmap"):
        parse_mapping("jwst_nirspec_dark_0029.rmap", text[: len(text) // 2])


def test_not_a_mapping_name() -> None:
    with pytest.raises(MappingSyntaxError, match="not a CRDS mapping name"):
        parse_mapping("jwst_nirspec_dark_0029.fits", "header = {}")


def test_library_parses_each_file_once_and_resolves_cache_roots(tmp_path: Path, jwst_mappings: Path) -> None:
    reads: list[str] = []

    def load(name: str) -> str:
        reads.append(name)
        return (jwst_mappings / name).read_text()

    library = MappingLibrary(load)
    assert library["jwst_0541.pmap"] is library["jwst_0541.pmap"]
    assert reads == ["jwst_0541.pmap"]
    assert "jwst_9999.pmap" not in MappingLibrary.from_dir(jwst_mappings)
    with pytest.raises(UnknownMappingError, match="jwst_9999.pmap"):
        MappingLibrary.from_dir(jwst_mappings)["jwst_9999.pmap"]
    with pytest.raises(UnknownMappingError):
        MappingLibrary.from_dir(jwst_mappings)["../secret.pmap"]
    cache_root = tmp_path / "cache"
    (cache_root / "mappings").mkdir(parents=True)
    (cache_root / "mappings" / "jwst").symlink_to(jwst_mappings)
    assert resolve_mappings_dir(cache_root, "jwst") == cache_root / "mappings" / "jwst"
    assert resolve_mappings_dir(jwst_mappings, "jwst") == jwst_mappings
    assert observatory_of("jwst_0541.pmap") == "jwst" and observatory_of("hst.pmap") == "hst"


def test_parsed_cache_serves_equal_objects_and_never_stale(tmp_path: Path, jwst_mappings: Path) -> None:
    from crdswatch.contexts.parsedcache import ParsedCache

    cache = ParsedCache(tmp_path)
    name = "jwst_nirspec_dark_0029.rmap"
    text = (jwst_mappings / name).read_text()
    first = cache.parse(name, text)
    entries = list((tmp_path / "parsed-v1").rglob(f"*-{name}"))
    assert len(entries) == 1
    assert cache.parse(name, text) == first == parse_mapping(name, text)
    edited = text.replace("jwst_nirspec_dark_0022.fits", "jwst_nirspec_dark_9999.fits")
    assert "jwst_nirspec_dark_9999.fits" in cache.parse(name, edited).selector.files()  # type: ignore[union-attr]
    entries[0].write_bytes(b"\x00garbage")
    assert cache.parse(name, text) == first  # a damaged entry is re-parsed, not trusted
    with pytest.raises(MappingSyntaxError):
        ParsedCache(tmp_path).parse(name, text[:100])  # errors are never cached away


def test_retain_tree_keeps_one_context_and_reloads_the_rest_on_demand(jwst_mappings: Path) -> None:
    loads: list[str] = []

    def load(name: str) -> str:
        loads.append(name)
        return (jwst_mappings / name).read_text(encoding="utf-8")

    library = MappingLibrary(load)
    for context in ("jwst_0500.pmap", "jwst_0541.pmap"):
        pmap = library[context]
        for imap in pmap.selections.values():
            if imap.endswith(".imap"):
                for rmap in library[imap].selections.values():
                    if rmap.endswith(".rmap"):
                        library[rmap]
    tree = set(library)  # everything both contexts name
    library.retain_tree("jwst_0541.pmap")
    kept = set(library)
    assert "jwst_0541.pmap" in kept and "jwst_0500.pmap" not in kept and kept < tree
    assert all(name in kept for name in library["jwst_0541.pmap"].selections.values() if name.endswith(".imap"))
    loads.clear()
    for name in kept:
        library[name]
    assert loads == []  # what was kept is not read again
    assert library["jwst_0500.pmap"].name == "jwst_0500.pmap" and loads == ["jwst_0500.pmap"]
