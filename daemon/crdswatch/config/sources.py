"""Settings sources: the TOML file and CRDSWATCH_* variables, as load_settings asked for them."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic_settings import EnvSettingsSource, TomlConfigSettingsSource
from pydantic_settings.sources.utils import parse_env_vars

from crdswatch.errors import ConfigError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    from pydantic_settings import BaseSettings

__all__ = ["LoadRequest", "env_source", "loading", "toml_source"]


@dataclass
class LoadRequest:
    """What one load_settings call reads, and (filled in by the sources) what each source gave."""

    path: Path | None = None
    environ: Mapping[str, str] | None = None  # None: os.environ
    toml_data: dict[str, Any] = field(default_factory=dict)
    env_data: dict[str, Any] = field(default_factory=dict)


_REQUEST: ContextVar[LoadRequest | None] = ContextVar("crdswatch_config_request", default=None)


@contextmanager
def loading(request: LoadRequest) -> Iterator[LoadRequest]:
    token = _REQUEST.set(request)
    try:
        yield request
    finally:
        _REQUEST.reset(token)


def _request() -> LoadRequest:
    return _REQUEST.get() or LoadRequest()


class _TomlSource(TomlConfigSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], request: LoadRequest) -> None:
        self._request = request
        super().__init__(settings_cls, toml_file=request.path)
        request.toml_data = self.toml_data

    def _read_file(self, file_path: Path | Traversable) -> dict[str, Any]:
        try:
            return super()._read_file(file_path)
        except tomllib.TOMLDecodeError as exc:
            where = re.search(r"\(at line (\d+), column (\d+)\)$", str(exc))
            reason = str(exc)[: where.start()].strip() if where else str(exc)
            at = f"line {where.group(1)}, column {where.group(2)}: " if where else ""
            raise ConfigError(f"{file_path}: {at}TOML syntax error: {reason}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{file_path}: not UTF-8 text (byte {exc.start})") from None
        except OSError as exc:
            raise ConfigError(f"{file_path}: cannot read: {exc.strerror or exc}") from None


class _EnvSource(EnvSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], request: LoadRequest) -> None:
        self._request = request
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        if self._request.environ is None:
            return super()._load_env_vars()
        return parse_env_vars(self._request.environ, self.case_sensitive, self.env_ignore_empty,
                              self.env_parse_none_str)

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        self._request.env_data = data
        overlaid = _overlay(data, self._request.toml_data)
        assert isinstance(overlaid, dict)
        return overlaid


def _overlay(env: Any, base: Any, where: str = "CRDSWATCH", indexed: bool = False) -> Any:
    """`env` over `base`, where CRDSWATCH_SOURCES__0__TIMEOUT-style digit keys address list items."""
    if isinstance(env, str) and indexed and env.lstrip()[:1] in ("[", "{"):
        try:  # pydantic-settings cannot know the type behind a list index: decode JSON here
            return json.loads(env)
        except ValueError:
            raise ConfigError(f"environment ({where}): not valid JSON") from None
    if not isinstance(env, dict):
        return env
    sep = "_" if where == "CRDSWATCH" else "__"
    indexes = sorted(int(k) for k in env if k.isdigit())
    if env and len(indexes) == len(env) and (isinstance(base, list) or indexes == list(range(len(env)))):
        out = list(base) if isinstance(base, list) else []
        for i in indexes:
            if i > len(out):
                raise ConfigError(f"environment ({where}{sep}{i}__...): index {i}, but the list has "
                                  f"{len(out)} item(s)")
            item = _overlay(env[str(i)], out[i] if i < len(out) else None, f"{where}{sep}{i}", True)
            out[i : i + 1] = [item]
        return out
    base = base if isinstance(base, dict) else {}
    over = {k: _overlay(v, base.get(k), f"{where}{sep}{k.upper()}", indexed) for k, v in env.items()}
    return {**base, **over}


def env_source(settings_cls: type[BaseSettings]) -> EnvSettingsSource:
    return _EnvSource(settings_cls, _request())


def toml_source(settings_cls: type[BaseSettings]) -> TomlConfigSettingsSource | None:
    request = _request()
    return _TomlSource(settings_cls, request) if request.path is not None else None
