"""`ast.parse` for the pure layers, one call at a time in the process (pure: no I/O).

CPython 3.11 keeps the AST constructor's recursion depth in interpreter-wide state, so two threads
parsing at once can fail with "SystemError: AST constructor recursion depth mismatch" (python/cpython
gh-106905). It happened here: a poll's worker thread parsed mappings while another thread parsed,
and the poll failed. The GIL runs one parse at a time anyway, so the lock costs no throughput;
`warnings.catch_warnings`, which the mapping parser puts around its parse, is process-wide state too.
"""

from __future__ import annotations

import ast
import threading
import warnings
from typing import Literal, overload

__all__ = ["parse"]

_LOCK = threading.Lock()


@overload
def parse(source: str, *, filename: str = ..., mode: Literal["exec"] = ..., quiet: bool = ...) -> ast.Module: ...
@overload
def parse(source: str, *, filename: str = ..., mode: Literal["eval"], quiet: bool = ...) -> ast.Expression: ...


def parse(source: str, *, filename: str = "<unknown>", mode: Literal["exec", "eval"] = "exec",
          quiet: bool = False) -> ast.Module | ast.Expression:
    """`ast.parse(source, filename, mode)` under the process-wide lock; `quiet` drops the
    SyntaxWarnings ("invalid escape sequence" and the like) a parse may emit."""
    with _LOCK:
        if not quiet:
            tree = ast.parse(source, filename=filename, mode=mode)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tree = ast.parse(source, filename=filename, mode=mode)
    assert isinstance(tree, ast.Module | ast.Expression)
    return tree
