"""Safe CRDS mapping parser: .pmap/.imap/.rmap text -> typed objects via `ast`, never executed."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any, Literal

from crdswatch.contexts.astparse import parse
from crdswatch.contexts.names import is_mapping_name
from crdswatch.errors import MappingSyntaxError
from crdswatch.limits import DEFAULT_LIMITS

__all__ = [
    "SELECTOR_KINDS",
    "SPECIAL_VALUES",
    "Choice",
    "Mapping",
    "MappingKind",
    "Selector",
    "mapping_kind",
    "parse_mapping",
]

# The selector constructors an rmap may call, exactly the set `crds` accepts.
SELECTOR_KINDS = frozenset(
    {"Match", "UseAfter", "VersionAfter", "SelectVersion", "ClosestTime", "GeometricallyNearest", "Bracket"}
)
# Leaves that are not files: "this step does not apply" / "leave this type out".
SPECIAL_VALUES = frozenset({"N/A", "TEMP_N/A", "n/a", "temp_n/a", "OMIT", "TEMP_OMIT", "omit"})

MappingKind = Literal["pipeline", "instrument", "reference"]
_KIND_BY_EXT: dict[str, MappingKind] = {".pmap": "pipeline", ".imap": "instrument", ".rmap": "reference"}
_SECTIONS = ("header", "comment", "selector")
_CHILD_EXT: dict[MappingKind, str] = {"pipeline": ".imap", "instrument": ".rmap", "reference": ""}
_MAX_INT_BITS = 256  # far beyond any real parameter value; keeps str() of every key cheap and legal


@dataclass(frozen=True, slots=True)
class Selector:
    """One selector of an rmap: `kind` picks among `items` using the header parameters of its depth.

    `items` are in the order `crds` keeps them (sorted by the string form of the key), duplicates
    resolved as Python's dict literal would (the last value wins).
    """

    kind: str
    parameters: tuple[str, ...]
    items: tuple[tuple[Any, Choice], ...]

    def __repr__(self) -> str:
        # Same text as crds' Selector.__repr__: it appears inside `crds diff` messages.
        return f"{self.kind}Selector({self.parameters!r}, nselections={len(self.items)})"

    def files(self) -> list[str]:
        """Every terminal value (file name or special value) below this selector."""
        out: list[str] = []
        for _key, choice in self.items:
            out.extend(choice.files() if isinstance(choice, Selector) else [choice])
        return out


Choice = Selector | str


@dataclass(frozen=True, slots=True)
class Mapping:
    """A parsed mapping. pmap/imap carry `selections` (lower-case key -> name); rmaps a `selector`."""

    name: str
    kind: MappingKind
    header: dict[str, Any]
    comment: str | None
    selections: dict[str, str]
    selector: Selector | None

    @property
    def sha1sum(self) -> str:
        return str(self.header.get("sha1sum", ""))

    @property
    def observatory(self) -> str:
        return str(self.header.get("observatory", "")).lower()

    @property
    def instrument(self) -> str:
        return str(self.header.get("instrument", "")).lower()

    @property
    def filekind(self) -> str:
        return str(self.header.get("filekind", "")).lower()

    @property
    def parkey(self) -> tuple[Any, ...]:
        value = self.header.get("parkey", ())
        return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def mapping_kind(name: str) -> MappingKind:
    for ext, kind in _KIND_BY_EXT.items():
        if name.endswith(ext):
            return kind
    raise MappingSyntaxError(name, None, "not a CRDS mapping name (expected .pmap, .imap or .rmap)")


def parse_mapping(
    name: str, text: str, *, max_bytes: int = DEFAULT_LIMITS.mapping_max_bytes,
    max_items: int = DEFAULT_LIMITS.mapping_max_items,
) -> Mapping:
    """Parse mapping `text` (named `name` for errors) without executing any of it.

    Only MappingSyntaxError leaves this function, whatever the text: size and item count are
    checked before Python's parser sees it (that costs ~1 KB of memory per item), and what the
    parser or the literal walk can raise on hostile input (deep nesting, huge numbers,
    unhashable keys) is turned into the typed error.
    """
    kind = mapping_kind(name)
    if not isinstance(text, str):
        raise MappingSyntaxError(name, None, f"mapping text must be a string, got {type(text).__name__}")
    if len(text) > max_bytes or len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise MappingSyntaxError(name, None, f"larger than mapping_max_bytes ({max_bytes} bytes)")
    if text.count(",") > max_items:
        raise MappingSyntaxError(name, None, f"more than mapping_max_items ({max_items}) items")
    try:
        return _parse(name, kind, text)
    except MappingSyntaxError:
        raise
    except (RecursionError, MemoryError) as exc:
        raise MappingSyntaxError(name, None, f"nested too deeply to parse ({type(exc).__name__})") from None
    except (ValueError, TypeError, OverflowError, UnicodeError, AttributeError, IndexError) as exc:
        raise MappingSyntaxError(name, None, f"not a valid mapping: {type(exc).__name__}: {str(exc)[:200]}") from None


def _parse(name: str, kind: MappingKind, text: str) -> Mapping:
    try:  # quiet: "invalid escape sequence" and the like are not the operator's business
        tree = parse(text, filename=name, mode="exec", quiet=True)
    except SyntaxError as exc:
        raise MappingSyntaxError(name, exc.lineno, f"not valid mapping syntax: {str(exc.msg)[:200]}") from None
    sections = _sections(name, tree)
    header = _literal(name, sections["header"])
    if not isinstance(header, dict):
        raise MappingSyntaxError(name, sections["header"].lineno, "header must be a dict")
    comment_node = sections.get("comment")
    comment = None if comment_node is None else _literal(name, comment_node)
    if comment is not None and not isinstance(comment, str):
        raise MappingSyntaxError(name, comment_node.lineno if comment_node else None, "comment must be a string")
    selector_node = sections["selector"]
    if kind == "reference":
        selector = _selector_tree(name, selector_node, _parkeys(name, header, selector_node), 0)
        return Mapping(name, kind, header, comment, {}, selector)
    selections = _literal(name, selector_node)
    if not isinstance(selections, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in selections.items()
    ):
        raise MappingSyntaxError(name, selector_node.lineno, f"a {kind} selector must be a dict of names")
    _check_graph(name, kind, selector_node.lineno, selections)
    # crds looks these keys up case-insensitively and reports them in lower case.
    return Mapping(name, kind, header, comment, {k.lower(): v for k, v in selections.items()}, None)


def _check_graph(name: str, kind: MappingKind, line: int, selections: dict[str, str]) -> None:
    """A context names only instrument mappings, those only reference mappings: the graph is a tree
    at most three deep, so no mapping can name itself or start a chain (see README, limits)."""
    child = _CHILD_EXT[kind]
    for key, value in selections.items():
        if value in SPECIAL_VALUES:
            continue
        if not (is_mapping_name(value) and value.endswith(child)):
            raise MappingSyntaxError(name, line, f"{key!r}: {value[:80]!r} is not a {child} mapping name "
                                     f"(a {kind} mapping may only name {child} mappings)")


def _sections(name: str, tree: ast.Module) -> dict[str, ast.expr]:
    found: dict[str, ast.expr] = {}
    for stmt in tree.body:
        if not (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
            and stmt.targets[0].id in _SECTIONS
        ):
            raise MappingSyntaxError(
                name, stmt.lineno, "only 'header = ...', 'comment = ...' and 'selector = ...' are allowed"
            )
        found[stmt.targets[0].id] = stmt.value
    for required in ("header", "selector"):
        if required not in found:
            raise MappingSyntaxError(name, None, f"missing '{required}' section")
    return found


def _parkeys(name: str, header: dict[str, Any], node: ast.expr) -> tuple[tuple[str, ...], ...]:
    parkey = header.get("parkey")
    if not isinstance(parkey, tuple) or not all(isinstance(level, tuple) for level in parkey):
        raise MappingSyntaxError(name, node.lineno, "rmap header 'parkey' must be a tuple of tuples")
    return tuple(tuple(str(p) for p in level) for level in parkey)


def _selector_tree(name: str, node: ast.expr, parkeys: tuple[tuple[str, ...], ...], depth: int) -> Selector:
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        raise MappingSyntaxError(name, node.lineno, "an rmap selector must be a call such as Match({...})")
    kind = node.func.id
    if kind not in SELECTOR_KINDS:
        raise MappingSyntaxError(name, node.lineno, f"unknown selector {kind!r}")
    if node.keywords or len(node.args) != 1 or not isinstance(node.args[0], ast.Dict):
        raise MappingSyntaxError(name, node.lineno, f"{kind}(...) takes exactly one dict")
    if depth >= len(parkeys):
        raise MappingSyntaxError(name, node.lineno, f"{kind} is nested deeper than the header 'parkey' allows")
    table: dict[Any, Choice] = {}
    for key_node, value_node in zip(node.args[0].keys, node.args[0].values):
        if key_node is None:
            raise MappingSyntaxError(name, value_node.lineno, "'**' is not allowed in a mapping")
        key = _plain(key_node) or _literal(name, key_node)
        _check_key(name, key_node.lineno, key)
        value: Choice
        if isinstance(value_node, ast.Call):
            value = _selector_tree(name, value_node, parkeys, depth + 1)
        else:
            literal = _plain(value_node) or _literal(name, value_node)
            if not isinstance(literal, str):
                raise MappingSyntaxError(name, value_node.lineno, "a selector leaf must be a file name or N/A")
            value = literal
        table[key] = value  # as a dict literal does: a repeated key keeps its last value
    items = tuple(sorted(table.items(), key=lambda item: _sort_key(item[0])))
    return Selector(kind, parkeys[depth], items)


def _sort_key(key: Any) -> tuple[str, ...]:
    # crds sorts selections by the str() of each key field; keep its order for identical output.
    return tuple([str(f) for f in key]) if isinstance(key, tuple) else (str(key),)


def _check_key(name: str, line: int, key: Any) -> None:
    fields = key if isinstance(key, tuple) else (key,)
    for field in fields:
        if type(field) is str and not (len(field) > 1 and field[0] == "(" and field[-1] == ")"):
            continue  # nearly every field: a plain match value
        if isinstance(field, str) and len(field) > 1 and field.startswith("(") and field.endswith(")"):
            try:
                re.compile(field)
            except re.error as exc:
                raise MappingSyntaxError(name, line, f"bad regular expression {field!r}: {exc}") from None
        elif isinstance(field, tuple) and all(isinstance(f, (str, int, float)) for f in field):
            continue  # a match set for one parameter, older syntax crds still reads (as 'A|B')
        elif not isinstance(field, (str, int, float)):
            raise MappingSyntaxError(name, line, f"bad match key field {field!r}")


_SURROGATE = re.compile("[\ud800-\udfff]")


def _plain(node: ast.expr) -> str | None:
    """A non-empty ASCII string constant, or None: what nearly every node of a mapping is, and one
    that needs none of _literal's checks (a lone surrogate is not ASCII). Inlined where a mapping
    has thousands of them: a call of _literal per node was a third of parsing one."""
    if type(node) is ast.Constant:
        value = node.value
        if type(value) is str and value.isascii():
            return value or None  # "" is falsy: _literal returns it, as before
    return None


def _literal(name: str, node: ast.expr) -> Any:
    """Value of a literal expression; anything that would need evaluation is rejected."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float, bool, type(None))):
        if isinstance(node.value, str) and _SURROGATE.search(node.value):
            # '\ud800' written as an escape: not text; no store, renderer or channel could encode it
            raise MappingSyntaxError(name, node.lineno, "string literal with a lone surrogate")
        if isinstance(node.value, int) and node.value.bit_length() > _MAX_INT_BITS:
            # 0x followed by 100k digits parses, then breaks str() and repr() in the diff.
            raise MappingSyntaxError(name, node.lineno, "integer literal too large")
        return node.value
    if isinstance(node, ast.Tuple):
        return tuple([_plain(elt) or _literal(name, elt) for elt in node.elts])
    if isinstance(node, ast.List):
        return [_plain(elt) or _literal(name, elt) for elt in node.elts]
    if isinstance(node, ast.Dict):
        out: dict[Any, Any] = {}
        for key_node, value_node in zip(node.keys, node.values):
            if key_node is None:
                raise MappingSyntaxError(name, value_node.lineno, "'**' is not allowed in a mapping")
            key = _plain(key_node) or _literal(name, key_node)
            try:
                hash(key)
            except TypeError:  # a list, or a tuple holding one
                raise MappingSyntaxError(name, key_node.lineno, "unhashable dict key") from None
            out[key] = _plain(value_node) or _literal(name, value_node)
        return out
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, (ast.USub, ast.UAdd))
        and isinstance(node.operand, ast.Constant)
        and isinstance(node.operand.value, (int, float))
    ):
        value = _literal(name, node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    what = type(node).__name__
    if isinstance(node, ast.Call):
        what = f"call to {ast.unparse(node.func)[:40]}()"
    raise MappingSyntaxError(name, getattr(node, "lineno", None), f"{what} is not allowed here")
