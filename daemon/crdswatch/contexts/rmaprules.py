"""One rmap, compiled for best-reference selection: what crds.core.rmap.ReferenceMapping does per header.

Order of steps (crds' `_get_best_ref`): `rmap_omit`, `rmap_relevance`, the precondition hook,
`parkey_relevance` (irrelevant parameters become N/A), the selector; on failure the HST
"do not reprocess" rule, then the fallback hook; a type that is not required
(`reffile_required = NO`) becomes N/A instead of failing.
"""

from __future__ import annotations

from collections.abc import Mapping as MappingABC
from dataclasses import dataclass
from typing import Any

from crdswatch.contexts.headerexpr import Expr, ExprError, ExprSyntaxError, compile_expr
from crdswatch.contexts.mappings import Mapping
from crdswatch.contexts.observatories import (
    HOOKS,
    JWST_EXTRA_KEYS,
    UNPORTED_HOOKS,
    Hook,
    dnr_check,
    fits_to_parkeys,
)
from crdswatch.contexts.selection import LookupFailure, Node, SelectionError, compile_selector
from crdswatch.errors import RmapError

__all__ = ["NA", "OMIT", "RmapError", "RmapRules", "Selected", "compile_rmap", "is_na", "is_omit"]

NA = "N/A"
OMIT = "OMIT"
_NA_VALUES = frozenset({"N/A", "TEMP_N/A", "n/a", "temp_n/a"})
_OMIT_VALUES = frozenset({"OMIT", "TEMP_OMIT", "omit", "temp_n/a"})
_MEMO_SIZE = 4096  # answers kept per rmap


def is_na(value: object) -> bool:
    return isinstance(value, str) and value in _NA_VALUES


def is_omit(value: object) -> bool:
    return isinstance(value, str) and value in _OMIT_VALUES


@dataclass(frozen=True, slots=True)
class Selected:
    """A file name (or tuple of names), `NA`, `OMIT`, or None with `reason` (no match)."""

    value: Any
    reason: str = ""


def _lower(value: Any) -> Any:
    # crds reads rmap header strings through a LowerCaseDict: lower case unless "(...)".
    if isinstance(value, str) and not (value.startswith("(") and value.endswith(")")):
        return value.lower()
    return value


def _evalable(code: str, parkeys: list[str]) -> str:
    # crds' condition_source_code_keys: META.A.B -> META_A_B, for the rmap's own parameters only.
    for key in parkeys:
        replacement = key.replace(".", "_")
        if replacement != key:
            code = code.replace(key, replacement)
    return code


def _with_evalable_keys(header: MappingABC[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = dict(header)
    for key in header:
        if "." in key:
            out[key.replace(".", "_")] = header[key]
    return out


class RmapRules:
    def __init__(self, mapping: Mapping) -> None:
        header = mapping.header
        self.name = mapping.name
        self.observatory = mapping.observatory
        self.instrument = mapping.instrument
        self.filekind = mapping.filekind
        if mapping.selector is None:
            raise RmapError(f"{mapping.name}: not a reference mapping")
        switch = str(_lower(header.get("reffile_switch", "NONE"))).upper()
        self.reffile_required = str(_lower(header.get("reffile_required", "NONE"))).upper()
        parkeys: list[str] = []
        for level in mapping.parkey:
            parkeys.extend(level if isinstance(level, tuple) else (level,))
        self._selector_parkeys = tuple(parkeys)
        if switch != "NONE":
            parkeys.append(switch)
        extra = header.get("extra_keys", ())
        parkeys.extend(str(k) for k in (extra if isinstance(extra, (tuple, list)) else ()))
        if self.observatory == "jwst":
            parkeys.extend(JWST_EXTRA_KEYS)
        self.required_parkeys = parkeys
        try:
            self.omit_expr = self._expr(str(_lower(header["rmap_omit"])) if "rmap_omit" in header else "False")
            relevance = str(_lower(header["rmap_relevance"])) if "rmap_relevance" in header else "always"
            self.relevance_expr = self._expr(relevance.replace("always", "True"))
            relevant: dict[str, Any] = dict(header.get("parkey_relevance") or {})
            for name in header.get("comment_parkeys", ()) or ():
                relevant[str(name).lower()] = "keep_comments"
            self.parkey_relevance = {str(k).lower(): self._expr(str(v)) for k, v in relevant.items()}
        except ExprSyntaxError as exc:
            raise RmapError(f"Can't load file {mapping.name!r} : {exc}") from None
        self.precondition = self._hook(header, "precondition_header")
        self.fallback = self._hook(header, "fallback_header")
        self._relevant = self._relevant_keys()
        self._memo: dict[tuple[str | None, ...], Selected] = {}
        try:
            self.selector: Node = compile_selector(mapping.selector, header)
        except (SelectionError, ValueError) as exc:
            raise RmapError(f"Can't load file {mapping.name!r} : {exc}") from None

    def _relevant_keys(self) -> tuple[str, ...] | None:
        if self.precondition is not None or self.fallback is not None:
            return None  # hooks may read anything: no memo
        # What the selector matches on and what the expressions read; the other required
        # parameters (extra keys, the reffile switch) only ever matter through those or hooks.
        names: set[str] = set(self._selector_parkeys)
        for expr in (self.omit_expr, self.relevance_expr, *self.parkey_relevance.values()):
            names |= expr.names()
        if self.observatory == "hst":
            names |= {"DETECTOR", "CCDGAIN"}  # the "do not reprocess" rule reads these
        return tuple(sorted(names))

    def _expr(self, source: str) -> Expr:
        return compile_expr(_evalable(source, self.required_parkeys))

    def _hook(self, header: MappingABC[str, Any], name: str) -> Hook | None:
        hooks = header.get("hooks")
        if hooks:
            hook_name = str(hooks.get(name, name)) if isinstance(hooks, dict) else name
        else:
            hook_name = f"{name}_{self.instrument}_{self.filekind}_v1"
        found = HOOKS.get(self.instrument, {}).get(hook_name)
        if found is None and hook_name in UNPORTED_HOOKS and self.observatory == "hst":
            raise RmapError(f"{self.name}: crds hook {hook_name} is not supported by crdswatch")
        return found

    # --- per header ---------------------------------------------------------------------------

    def select(self, header_in: dict[str, str]) -> Selected:
        """The choice for a minimised, conditioned dataset header (crds' `get_best_ref`).

        Memoised on the values of the parameters this rmap can look at: datasets that differ only
        in what another reference type selects on share one answer here.
        """
        key = None if self._relevant is None else tuple(header_in.get(k) for k in self._relevant)
        if key is not None:
            found = self._memo.get(key)
            if found is not None:
                return found
        try:
            result = self._select(header_in)
        except (SelectionError, LookupFailure, ExprError, KeyError, ValueError, TypeError) as exc:
            result = Selected(None, _reason(exc))
        if key is not None:
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()
            self._memo[key] = result
        return result

    def _select(self, header_in: dict[str, str]) -> Selected:
        if not (self.omit_expr.constant and self.relevance_expr.constant):
            expr_header = _with_evalable_keys(header_in)
            try:
                if self.omit_expr.evaluate(expr_header):
                    return Selected(OMIT)
            except ExprError:
                pass  # crds logs a warning and keeps the type
            try:
                if not self.relevance_expr.evaluate(expr_header):
                    return Selected(NA, "rmap_relevance")
            except ExprError:
                pass
        elif self.omit_expr.evaluate({}):
            return Selected(OMIT)
        elif not self.relevance_expr.evaluate({}):
            return Selected(NA, "rmap_relevance")
        header = self.precondition(header_in) if self.precondition else header_in
        header = self._irrelevant_to_na(header or {})
        try:
            choice = self.selector.choose(header)
        except (SelectionError, LookupFailure, KeyError, ValueError, TypeError):
            if dnr_check(self.observatory, header):
                return Selected(NA, "do not reprocess")
            fallback = self.fallback(dict(header_in)) if self.fallback else None
            try:
                if not fallback:
                    raise  # the first failure
                minimal = self._minimize(fallback)
                choice = self.selector.choose(self._irrelevant_to_na(minimal))
            except (SelectionError, LookupFailure, KeyError, ValueError, TypeError):
                if self.reffile_required in ("YES", "NONE"):
                    raise
                return Selected(NA, "not required")
        if is_na(choice):
            return Selected(NA)
        if is_omit(choice):
            return Selected(OMIT)
        return Selected(choice)

    def _minimize(self, header: dict[str, str]) -> dict[str, str]:
        parkeyed = fits_to_parkeys(self.observatory, header)
        return {k: parkeyed.get(k.lower(), parkeyed.get(k.upper(), "UNDEFINED")) for k in self.required_parkeys}

    def _irrelevant_to_na(self, header: dict[str, str]) -> dict[str, str]:
        if not self.parkey_relevance:
            return header
        expr_header: dict[str, Any] = dict(header)
        for key in self.required_parkeys:
            if key not in expr_header or expr_header[key] in ("UNDEFINED", None):
                expr_header[key] = "UNDEFINED"
        expr_header = _with_evalable_keys(expr_header)
        expr_header["keep_comments"] = False
        out = dict(header)
        for parkey in self.required_parkeys:
            expr = self.parkey_relevance.get(parkey.lower())
            if expr is not None and not expr.evaluate(expr_header):
                out[parkey] = "N/A"
        return out


def _reason(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"missing parameter {exc}"
    return str(exc)


def compile_rmap(mapping: Mapping) -> RmapRules:
    return RmapRules(mapping)
