"""load_settings: find and read the TOML file, apply CRDSWATCH_* overrides, explain what is wrong."""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_core import ErrorDetails, to_jsonable_python
from pydantic_settings import SettingsError

from crdswatch.config.models import Settings
from crdswatch.config.sources import LoadRequest, loading
from crdswatch.errors import ConfigError
from crdswatch.redact import MASK, redact_url

__all__ = ["DEFAULT_CONFIG_PATHS", "find_config_file", "format_errors", "load_settings", "redacted_summary"]

DEFAULT_CONFIG_PATHS: tuple[Path, ...] = (
    Path("config/crdswatch.toml"),
    Path("/etc/crdswatch/crdswatch.toml"),
)
NOT_SET = "(not set)"

Loc = tuple[int | str, ...]


def find_config_file(path: Path | None) -> Path | None:
    """`path` (which must exist), else the first of DEFAULT_CONFIG_PATHS that exists, else None."""
    if path is not None:
        if not path.exists():
            raise ConfigError(f"{path}: no such configuration file")
        if not path.is_file():
            raise ConfigError(f"{path}: not a file")
        return path
    return next((p for p in DEFAULT_CONFIG_PATHS if p.is_file()), None)


def load_settings(path: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from `path` (--config) or the default locations, overridden by CRDSWATCH_* variables.

    `env` replaces os.environ (for tests). Raises ConfigError naming the file and each bad key path.
    """
    request = LoadRequest(find_config_file(path), env)
    origin = str(request.path) if request.path else "(no configuration file)"
    try:
        with loading(request):
            settings = Settings()
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, origin, request)) from None  # not chained: inputs hold secrets
    except SettingsError as exc:  # e.g. a CRDSWATCH_SOURCES value that is not JSON
        field = re.search(r'field "(\w+)"', str(exc))
        name = f"CRDSWATCH_{field.group(1).upper()}" if field else "CRDSWATCH_*"
        raise ConfigError(f"environment ({name}): not valid JSON ({exc.__cause__ or exc})") from None
    settings._config_file = request.path
    return settings


def format_errors(exc: ValidationError, origin: str, request: LoadRequest | None = None) -> str:
    """One line per error: `FILE: key.path[i]: what is wrong`; secrets are never echoed."""
    request = request or LoadRequest()
    lines = [_format_one(error, origin, request) for error in exc.errors(include_url=False)]
    return "\n".join(dict.fromkeys(lines))


def _format_one(error: ErrorDetails, origin: str, request: LoadRequest) -> str:
    loc: Loc = tuple(error["loc"])
    ctx = error.get("ctx") or {}
    kind = error["type"]
    if kind == "crdswatch_config":
        loc += _parse_path(str(ctx.get("at", "")))
        message = str(ctx.get("message", error["msg"]))
    elif kind == "extra_forbidden":
        message = "unknown key" + _did_you_mean(loc)
    elif kind == "missing":
        message = "required key is missing"
    elif kind in ("value_error", "assertion_error"):
        message = re.sub(r"^(Value|Assertion) error, ", "", error["msg"])
    elif _is_secret(loc) or isinstance(error["input"], (dict, list)):
        message = error["msg"]
    else:
        message = f"{error['msg']} (got {error['input']!r})"
    where = _render(loc, request)
    if _lookup(request.env_data, loc) is not _ABSENT and not (kind == "missing" and request.path):
        origin = f"environment ({_env_name(request.env_data, loc)})"
    return f"{origin}: {where}: {message}" if where else f"{origin}: {message}"


def _parse_path(at: str) -> Loc:
    return tuple(int(i) if i else k for i, k in re.findall(r"\[(\d+)\]|([^.\[\]]+)", at))


def _env_name(data: Any, loc: Loc) -> str:
    """The CRDSWATCH_* variable that set the value at `loc` (best effort: JSON objects look nested)."""
    names: list[str] = []
    for part in loc:
        if not isinstance(data, dict):
            break
        names.append(str(part).upper())
        data = data[str(part)]
    return "CRDSWATCH_" + "__".join(names)


def _render(loc: Loc, request: LoadRequest) -> str:
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
            if loc[:1] == ("subscribers",) and i == 1 and loc[2:3] != ("name",):
                name = _subscriber_name(part, request)
                out += f" ({name})" if name else ""
        elif part == "[key]":
            out += " (the key)"
        elif re.fullmatch(r"\w+", part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


_ABSENT = object()


def _lookup(data: Any, loc: Loc) -> Any:
    """The value at `loc` in raw source data (digit-string keys count as list indexes), or _ABSENT."""
    for part in loc:
        if isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        elif isinstance(data, dict) and str(part) in data:
            data = data[str(part)]
        elif isinstance(data, str):  # a variable holding JSON set everything below it
            return data
        else:
            return _ABSENT
    return data


def _subscriber_name(index: int, request: LoadRequest) -> str | None:
    for data in (request.env_data, request.toml_data):
        name = _lookup(data, ("subscribers", index, "name"))
        if isinstance(name, str) and re.fullmatch(r"[\w.-]{1,64}", name):
            return name
    return None


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model class whose keys live at `loc` (Settings at ()), if any."""
    tp: Any = Settings
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
            field = tp.model_fields.get(part)
            if field is None:
                return None
            tp = field.annotation
        elif get_origin(tp) in (list, dict):
            tp = get_args(tp)[-1]
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def _did_you_mean(loc: Loc) -> str:
    model = _model_at(loc[:-1])
    if model is None or not isinstance(loc[-1], str):
        return ""
    close = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _is_secret(loc: Loc) -> bool:
    for cut in range(len(loc), 0, -1):
        model = _model_at(loc[: cut - 1])
        if model is not None and isinstance(loc[cut - 1], str):
            field = model.model_fields.get(str(loc[cut - 1]))
            return field is not None and _holds_secret(field.annotation)
    return False


def _holds_secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in get_args(annotation)


def redacted_summary(settings: Settings) -> dict[str, Any]:
    """Every setting as plain JSON-able data, for `crdswatch check-config`; secrets never shown."""
    out = _redact(settings)
    assert isinstance(out, dict)
    return out


def _redact(value: Any) -> Any:
    if isinstance(value, BaseModel):
        out: dict[str, Any] = {}
        for name, field in type(value).model_fields.items():
            item = getattr(value, name)
            secret = _holds_secret(field.annotation)
            out[name] = (MASK if item is not None else NOT_SET) if secret else _redact(item)
        if "database" in out and isinstance(out["database"], str):
            out["database"] = redact_url(out["database"])
        return out
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, Mapping):
        return {str(k): _redact(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_redact(v) for v in value]
    return to_jsonable_python(value)
