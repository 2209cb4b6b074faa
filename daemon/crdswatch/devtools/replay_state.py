"""The replay server's model: real mappings, real history up to a cursor, and the RPC methods."""

from __future__ import annotations

import functools
import itertools
import os
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crdswatch.contexts.history import (
    ServerConfig,
    format_history_date,
    load_server_config,
    parse_history_date,
)

__all__ = ["NOT_READY", "ReplayState", "RpcFault", "bundled_datasets", "load_config_cached"]

# The real server's words when its reprocessing job has not computed a switch yet.
NOT_READY = "No precomputed affected datasets results exist for old_context='{}' and new_context='{}'"

_SELECTOR_RE = re.compile(r"^selector\s*=", re.MULTILINE)
_QUOTED_RE = re.compile(r"""['"]([A-Za-z0-9_.+-]+\.[A-Za-z0-9]+)['"]""")
_HEADER_FIELD_RE = re.compile(r"""^\s*['"](instrument|filekind)['"]\s*:\s*['"]([^'"]*)['"]""", re.MULTILINE)
_MAPPING_RE = re.compile(r"^[a-z][a-z0-9_]*\.(?:pmap|imap|rmap)$")
# Fields a 2019 server_config really came with that only the client adds; not server facts.
_CLIENT_ONLY_INFO = ("status", "connected", "last_synced", "last_refreshed")


class RpcFault(Exception):
    """Becomes a JSON-RPC error envelope, exactly as the real server reports failures."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        self.message = message
        super().__init__(f"{name}: {message}")


class ReplayState:
    """Thread-safe: the HTTP server handles each request on its own thread."""

    def __init__(
        self,
        mappings_dir: Path,
        config: ServerConfig,
        upto: str | None = None,
        legacy_default_context: bool = False,
    ) -> None:
        self.mappings_dir = Path(mappings_dir)
        self.config = config
        self.observatory = config.observatory or "jwst"
        self.legacy_default_context = legacy_default_context
        self._lock = threading.Lock()
        # Oldest first; reverts (the same context twice) are real and kept.
        self.real_rows = sorted(config.context_history, key=lambda r: (parse_history_date(r[0]), r[1]))
        if not self.real_rows:
            raise ValueError("server_config has an empty context_history")
        contexts = [r[1] for r in self.real_rows]
        if upto is None:
            cut = 0
        elif upto in contexts:
            cut = contexts.index(upto)
        else:
            raise ValueError(f"{upto!r} is not in the server's context history")
        self.visible: list[tuple[str, str, str]] = list(self.real_rows[: cut + 1])
        self.next_index = cut + 1
        # get_affected_datasets: the first `affected_not_ready` calls for each switch answer "not
        # computed yet", as the real server does until its reprocessing job has run.
        self.affected_not_ready = 0
        self._affected_asked: dict[tuple[str, str], int] = {}
        self._affected: dict[tuple[str, str], list[str]] = {}
        self._affected_lock = threading.Lock()
        self._rules: Any = None

    # -- activation control ------------------------------------------------------------------

    @property
    def current(self) -> str:
        return self.visible[-1][1]

    def _row_json(self, row: tuple[str, str, str]) -> dict[str, Any]:
        return {"date": row[0], "context": row[1], "description": row[2], "history_length": len(self.visible)}

    def activate_next(self) -> dict[str, Any] | None:
        with self._lock:
            if self.next_index >= len(self.real_rows):
                return None
            self.visible.append(self.real_rows[self.next_index])
            self.next_index += 1
            return self._row_json(self.visible[-1])

    def activate(self, context: str, description: str = "") -> dict[str, Any]:
        """Jump ahead in real history (intermediate activations included), or set any pmap now."""
        if not _MAPPING_RE.match(context) or not context.endswith(".pmap"):
            raise ValueError(f"not a pipeline context name: {context!r}")
        if not (self.mappings_dir / context).is_file():
            raise LookupError(f"no such context: {context}")
        with self._lock:
            ahead = [r[1] for r in self.real_rows[self.next_index :]]
            if context in ahead:
                stop = self.next_index + ahead.index(context) + 1
                self.visible.extend(self.real_rows[self.next_index : stop])
                self.next_index = stop
            else:
                # Not upcoming in real history (e.g. a revert): record it now, in the modern date style.
                now = format_history_date(datetime.now(UTC))
                self.visible.append((now, context, description or f"Replay: activated {context}"))
            return self._row_json(self.visible[-1])

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            upcoming = self.real_rows[self.next_index][1] if self.next_index < len(self.real_rows) else None
            return {
                "context": self.current,
                "history_length": len(self.visible),
                "next": upcoming,
                "remaining": len(self.real_rows) - self.next_index,
                "observatory": self.observatory,
            }

    # -- mapping files -----------------------------------------------------------------------

    def mapping_path(self, name: str) -> Path | None:
        if not _MAPPING_RE.match(name):
            return None
        path = self.mappings_dir / name
        return path if path.is_file() else None

    @functools.lru_cache(maxsize=8192)  # noqa: B019 - one state per server; files never change
    def _mapping_text(self, name: str) -> str:
        path = self.mapping_path(name)
        if path is None:
            raise RpcFault("UnknownMapping", f"Unknown mapping {name!r}")
        return path.read_text(encoding="utf-8")

    def _children(self, name: str) -> list[str]:
        # Only the selector names children; the header's derived_from must not count.
        text = self._mapping_text(name)
        m = _SELECTOR_RE.search(text)
        body = text[m.end() :] if m else ""
        return [n for n in _QUOTED_RE.findall(body) if _MAPPING_RE.match(n)]

    def mapping_names(self, context: str) -> list[str]:
        seen: set[str] = set()
        todo = [context]
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(self._children(name))
        return sorted(seen)

    # -- JSON-RPC ----------------------------------------------------------------------------

    def _check_obs(self, observatory: object) -> None:
        if observatory != self.observatory:
            raise RpcFault("InvalidObservatory", f"Unknown observatory {observatory!r}")

    def get_default_context(self, observatory: object, state: object = None) -> str:
        self._check_obs(observatory)
        known = (None, "operational") if self.legacy_default_context else (None, "operational", "latest", "edit", "build")
        if state not in known:
            raise RpcFault("ValueError", f"Invalid context state {state!r}")
        if state == "build":
            return self.config.build_context or self.current
        return self.current

    def get_build_context(self, observatory: object, calver: object = None) -> str:
        self._check_obs(observatory)
        if self.legacy_default_context:
            raise RpcFault("OtherError", "method get_build_context not found")
        return self.config.build_context or self.current

    def get_context_history(self, observatory: object) -> list[list[str]]:
        self._check_obs(observatory)
        with self._lock:
            return [list(row) for row in reversed(self.visible)]

    def get_server_info(self, base_url: str) -> dict[str, Any]:
        info = {k: v for k, v in self.config.raw.items() if k not in _CLIENT_ONLY_INFO}
        with self._lock:
            info["operational_context"] = info["edit_context"] = self.current
            info["context_history"] = [list(row) for row in reversed(self.visible)]
        obs = self.observatory
        info["server"] = base_url
        info["mapping_url"] = {obs: f"{base_url}/unchecked_get/mappings/{obs}/"}
        info["reference_url"] = {obs: f"{base_url}/unchecked_get/references/{obs}/"}
        return info

    def get_mapping_names(self, context: object) -> list[str]:
        if not isinstance(context, str) or self.mapping_path(context) is None:
            raise RpcFault("UnknownContext", f"Unknown context {context!r}")
        return self.mapping_names(context)

    def get_file_info_map(self, observatory: object, files: object = None, fields: object = None) -> dict[str, Any]:
        self._check_obs(observatory)
        metadata = self.config.download_metadata
        if files is None:
            names = sorted(metadata)
        elif isinstance(files, list) and all(isinstance(f, str) for f in files):
            names = list(files)
        else:
            raise RpcFault("ValueError", "files must be a list of names or null")
        if fields is not None and not (isinstance(fields, list) and all(isinstance(f, str) for f in fields)):
            raise RpcFault("ValueError", "fields must be a list of names or null")
        result: dict[str, Any] = {}
        for name in names:
            if name not in metadata:
                result[name] = "NOT FOUND"  # the crds client tests `"NOT FOUND" in info`
                continue
            record = {"name": name, **metadata[name], **_catalog_facts(str(self.mappings_dir)).get(name, {})}
            if fields is not None:
                record = {k: v for k, v in record.items() if k in fields}
            result[name] = record
        return result

    def get_affected_datasets(self, observatory: object, old_context: object = None,
                              new_context: object = None) -> dict[str, Any]:
        """crds_server's answer for a switch: the bundled datasets whose best references change.

        `new_context` defaults to the current context, `old_context` to the one before it in the
        history. A switch not yet in the history, or asked about fewer than `affected_not_ready`
        times before, is "not computed yet" (the real server's error, word for word).
        """
        self._check_obs(observatory)
        with self._lock:
            contexts = [row[1] for row in self.visible]
        new = new_context if new_context is not None else contexts[-1]
        if not isinstance(new, str) or (old_context is not None and not isinstance(old_context, str)):
            raise RpcFault("ValueError", "contexts must be .pmap names or null")
        if old_context is None:
            earlier = [c for c, after in itertools.pairwise(contexts) if after == new]
            old = earlier[-1] if earlier else None
        else:
            old = old_context
        for name in (old, new):
            if name is not None and (not name.endswith(".pmap") or self.mapping_path(name) is None):
                raise RpcFault("ValueError", f"Unknown context {name!r}")
        not_ready = RpcFault("OtherError", NOT_READY.format(old_context, new_context))
        if old is None or new not in contexts:
            raise not_ready
        with self._affected_lock:
            asked = self._affected_asked[(old, new)] = self._affected_asked.get((old, new), 0) + 1
            if asked <= self.affected_not_ready:
                raise not_ready
            ids = self._affected.get((old, new))
            if ids is None:
                ids = self._affected[(old, new)] = self._compute_affected(old, new)
        return {
            "computation_dir": f"{self.observatory}_{_serial(old)}_{_serial(new)}",
            "observatory": self.observatory,
            "affected_ids": ids,
            "bestrefs_status": 0,
            "old_context": old,
            "new_context": new,
            "bestrefs_err_summary": "",
        }

    def _compute_affected(self, old: str, new: str) -> list[str]:
        from crdswatch.contexts.bestref import BestrefError, Rules, bestrefs
        from crdswatch.contexts.library import MappingLibrary

        if self._rules is None:  # compiled once per server: consecutive contexts share most rmaps
            self._rules = Rules(MappingLibrary.from_dir(self.mappings_dir))
        before, after = self._rules.context(old), self._rules.context(new)
        out: list[str] = []
        for dataset_id, header in bundled_datasets(self.observatory):
            try:
                changed = bestrefs(before, header).bestrefs != bestrefs(after, header).bestrefs
            except BestrefError:  # an instrument one of the contexts does not have: not affected
                changed = False
            if changed:
                out.append(dataset_id)
        return out

    def dispatch(self, method: str, params: list[Any], base_url: str) -> Any:
        table: dict[str, tuple[Callable[..., Any], int, int]] = {
            "get_default_context": (self.get_default_context, 1, 2),
            "get_build_context": (self.get_build_context, 1, 2),
            "get_context_history": (self.get_context_history, 1, 1),
            "get_server_info": (lambda: self.get_server_info(base_url), 0, 0),
            "get_mapping_names": (self.get_mapping_names, 1, 1),
            "get_file_info_map": (self.get_file_info_map, 1, 3),
            "get_affected_datasets": (self.get_affected_datasets, 1, 3),
        }
        if method not in table:
            raise RpcFault("MethodNotFound", f"method {method!r} not found")
        func, least, most = table[method]
        if not least <= len(params) <= most:
            raise RpcFault("TypeError", f"{method}() takes {least} to {most} arguments ({len(params)} given)")
        return func(*params)


def _serial(context: str) -> str:
    return context.rsplit("_", 1)[-1].split(".")[0]


@functools.lru_cache(maxsize=4)
def bundled_datasets(observatory: str) -> tuple[tuple[str, dict[str, str]], ...]:
    """(dataset id, header) of the bundled real-looking datasets (crdswatch/data/affected_datasets.json)."""
    import json
    from importlib import resources

    data = json.loads((resources.files("crdswatch") / "data" / "affected_datasets.json").read_text("utf-8"))
    out = []
    for entry in data.get(observatory, ()):
        stem = f"JW{entry['program']}{entry['observation']}{entry['visit']}"
        for exposure in range(1, int(entry["exposures"]) + 1):
            out.append((f"{stem}_02101_{exposure:05d}_{entry['detector']}", dict(entry["header"])))
    return tuple(out)


@functools.lru_cache(maxsize=4)
def _catalog_facts(mappings_dir: str) -> dict[str, dict[str, str]]:
    """instrument/filekind per file, as far as the mappings themselves say (never guessed).

    Cached per directory across server instances: mappings are immutable by name.
    """
    facts: dict[str, dict[str, str]] = {}
    for path in sorted(Path(mappings_dir).iterdir()):
        if not _MAPPING_RE.match(path.name):
            continue
        text = path.read_text(encoding="utf-8")
        head = {k: v.lower() for k, v in _HEADER_FIELD_RE.findall(text.split("selector", 1)[0])}
        facts[path.name] = head
        if path.name.endswith(".rmap"):
            m = _SELECTOR_RE.search(text)
            for ref in _QUOTED_RE.findall(text[m.end() :] if m else ""):
                if not _MAPPING_RE.match(ref):
                    facts.setdefault(ref, dict(head))
    return facts


@functools.lru_cache(maxsize=4)
def _cached_config(path: str, mtime_ns: int, size: int) -> ServerConfig:
    return load_server_config(Path(path))


def load_config_cached(path: Path) -> ServerConfig:
    """Parse a server_config once per (path, mtime, size): 230 kB of literal is slow for each test."""
    st = os.stat(path)
    return _cached_config(str(path), st.st_mtime_ns, st.st_size)
