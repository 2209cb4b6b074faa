"""Limits live in one place: crdswatch.limits, the [limits] config table, the example TOML and the README agree."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from crdswatch.config import LimitsSettings, load_settings
from crdswatch.errors import ConfigError
from crdswatch.limits import DEFAULT_LIMITS, Limits, stale_after

ROOT = Path(__file__).resolve().parent.parent


def test_config_table_mirrors_the_pure_defaults() -> None:
    assert set(LimitsSettings.model_fields) == {f.name for f in fields(Limits)}
    assert LimitsSettings().to_limits() == DEFAULT_LIMITS


def test_example_and_readme_document_every_limit_with_its_default() -> None:
    example = (ROOT / "config" / "crdswatch.example.toml").read_text()
    table = example.split("\n[limits]\n", 1)[1].split("\n[[", 1)[0]
    readme = (ROOT / "README.md").read_text().split("## Limits and failure behaviour", 1)[1]
    for f in fields(Limits):
        value = getattr(DEFAULT_LIMITS, f.name)
        found = re.search(rf"^{f.name} = (\S+)$", table, re.MULTILINE)
        assert found, f"{f.name} is not set in the example's [limits] table"
        assert float(found.group(1)) == value, f"{f.name}: example says {found.group(1)}, default is {value}"
        assert f"`{f.name}`" in readme, f"README's limits table has no row for {f.name}"


def test_limits_load_from_toml_and_bad_values_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[limits]\nmapping_max_bytes = 65536\nstale_polls = 2\n")
    limits = load_settings(path, {}).limits.to_limits()
    assert (limits.mapping_max_bytes, limits.stale_polls) == (65536, 2)
    assert stale_after(limits, 300) == 600
    path.write_text("[limits]\nstale_polls = 0\n")
    with pytest.raises(ConfigError, match=r"limits\.stale_polls"):
        load_settings(path, {})
    path.write_text("[limits]\nstale_pols = 2\n")
    with pytest.raises(ConfigError, match=r"limits\.stale_pols"):
        load_settings(path, {})


def test_healthz_turns_503_when_a_source_is_stale_whatever_the_counters_say() -> None:
    from types import SimpleNamespace

    from crdswatch.service.daemon import Health

    watch = SimpleNamespace(key="https://s|jwst|latest", poll_interval=60)
    health = Health(stale_polls=3, started=1000.0)
    health.heartbeat = 1180.0
    health.last_ok[watch.key] = 0.0
    health.ok_at[watch.key] = 1000.0  # succeeded at t=1000; no failure counted since
    assert health.healthy([watch], 1000.0 + 180) == (True, "ok")  # type: ignore[list-item]
    health.heartbeat = 1181.0
    ok, why = health.healthy([watch], 1181.0)  # type: ignore[list-item]
    assert not ok and "no successful poll for 181 s (bound 180 s)" in why
    assert [w.key for w, _age, _bound in health.stale([watch], 1181.0)] == [watch.key]  # type: ignore[list-item]
