"""Deployment files keep their contract: the systemd unit, the Dockerfile and the compose file."""

from __future__ import annotations

import configparser
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "crdswatch.service"
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "deploy" / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "deploy" / "crdswatch.env.example"


# --- systemd unit -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text(encoding="utf-8"), source=str(UNIT))
    return parser


UNIT_CONTRACT = {
    "Unit": {
        "After": "network-online.target",
        "Wants": "network-online.target",
    },
    "Service": {
        "Type": "notify",
        "NotifyAccess": "main",
        "WatchdogSec": "60",
        "DynamicUser": "yes",
        "StateDirectory": "crdswatch",
        "CacheDirectory": "crdswatch",
        "ConfigurationDirectory": "crdswatch",
        "Environment": "CRDSWATCH_CACHE=/var/cache/crdswatch",
        "EnvironmentFile": "-/etc/crdswatch/crdswatch.env",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "RestrictNamespaces": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "RestrictRealtime": "yes",
        "SystemCallArchitectures": "native",
        "SystemCallFilter": "@system-service",
        "CapabilityBoundingSet": "",
        "UMask": "0077",
        "Restart": "on-failure",
        "RestartSec": "5s",
        "TimeoutStopSec": "30s",
        "KillSignal": "SIGTERM",
        "LimitNOFILE": "8192",  # well above [http] max_connections (issue 9, class 11)
    },
    "Install": {
        "WantedBy": "multi-user.target",
    },
}


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [(s, k, v) for s, keys in UNIT_CONTRACT.items() for k, v in keys.items()],
)
def test_unit_contract(unit: configparser.ConfigParser, section: str, key: str, value: str) -> None:
    assert unit.has_option(section, key), f"[{section}] {key}= missing"
    assert unit.get(section, key).strip() == value


def test_unit_execstart(unit: configparser.ConfigParser) -> None:
    argv = unit.get("Service", "ExecStart").split()
    assert argv[0] == "/opt/crdswatch/venv/bin/crdswatch"
    assert argv[1] == "run"
    assert argv[argv.index("--config") + 1] == "/etc/crdswatch/crdswatch.toml"
    assert argv[argv.index("--log-format") + 1] == "json"


def test_unit_has_no_secrets(unit: configparser.ConfigParser) -> None:
    # Secrets belong in the EnvironmentFile=, which is 0600; the unit itself is world-readable.
    environment = unit.get("Service", "Environment", fallback="").upper()
    assert "PASSWORD" not in environment and "SECRET" not in environment


def test_env_example_documents_secrets_and_mode() -> None:
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    assert re.search(r"^CRDSWATCH_SMTP__PASSWORD=", text, re.MULTILINE)
    assert "0600" in text
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert re.fullmatch(r"CRDSWATCH_[A-Z0-9_]+=\S*", line), line


# --- Dockerfile ---------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        out.append((keyword.upper(), args.strip()))
    assert not pending, "Dockerfile ends in a continuation line"
    return out


def last_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (kw, _) in enumerate(instructions) if kw == "FROM"]
    return instructions[starts[-1]:]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and value and all(isinstance(v, str) for v in value), args
    return value


def test_dockerfile_multistage_on_python_311_slim() -> None:
    instructions = dockerfile_instructions()
    froms = [args for kw, args in instructions if kw == "FROM"]
    assert len(froms) >= 2
    args = dict(a.split("=", 1) for kw, a in instructions if kw == "ARG" and "=" in a)
    images = {re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], f.split()[0]) for f in froms}
    assert images == {"python:3.11-slim"}
    assert any('pip wheel ".[postgres]" -w /wheels' in a for kw, a in instructions if kw == "RUN")


def test_dockerfile_runs_as_non_root() -> None:
    users = [args for kw, args in last_stage(dockerfile_instructions()) if kw == "USER"]
    assert users, "no USER in the runtime stage"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert user in ("crdswatch", "10001")


def test_dockerfile_exec_form_entrypoint_and_cmd() -> None:
    stage = last_stage(dockerfile_instructions())
    entrypoint = [a for kw, a in stage if kw == "ENTRYPOINT"]
    cmd = [a for kw, a in stage if kw == "CMD"]
    assert entrypoint and cmd
    assert exec_form(entrypoint[-1]) == ["crdswatch"]
    assert exec_form(cmd[-1]) == ["run", "--config", "/etc/crdswatch/crdswatch.toml", "--log-format", "json"]


def test_dockerfile_healthcheck_calls_healthz() -> None:
    checks = [a for kw, a in last_stage(dockerfile_instructions()) if kw == "HEALTHCHECK"]
    assert len(checks) == 1
    options, _, command = checks[0].partition("CMD ")
    assert "--timeout=" in options
    argv = exec_form(command)
    assert argv[0] == "python"
    assert "http://127.0.0.1:8077/healthz" in argv[-1]
    compile(argv[-1], "<healthcheck>", "exec")


def test_dockerfile_state_volume_and_env() -> None:
    stage = last_stage(dockerfile_instructions())
    volumes = [v for kw, a in stage if kw == "VOLUME" for v in exec_form(a)]
    assert "/var/lib/crdswatch" in volumes
    env = " ".join(a for kw, a in stage if kw == "ENV")
    # settings belong in the config (defaults or the mounted TOML): an image ENV would override it
    assert "CRDSWATCH_STATE__" not in env and "CRDSWATCH_HTTP__" not in env
    assert '"crdswatch[postgres]"' in DOCKERFILE.read_text()  # psycopg: PostgreSQL works
    assert "CRDSWATCH_CACHE=/var/lib/crdswatch/cache" in env
    assert ("EXPOSE", "8077") in stage


def test_dockerignore_keeps_context_small() -> None:
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    for entry in (".git", ".venv", "tests", "demo-out"):
        assert entry in ignored


# --- docker compose -----------------------------------------------------------------------------


def test_compose_file() -> None:
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    service = doc["services"]["crdswatch"]
    assert service["build"]["context"] == ".."
    assert service["restart"] == "unless-stopped"
    assert "127.0.0.1:8077:8077" in service["ports"]
    assert "healthcheck" not in service  # the image's HEALTHCHECK applies
    mounts = service["volumes"]
    assert "state:/var/lib/crdswatch" in mounts
    assert any(m.endswith(":/etc/crdswatch/crdswatch.toml:ro") for m in mounts)
    assert "state" in doc["volumes"]
    mailpit = doc["services"]["mailpit"]
    assert mailpit["profiles"] == ["mailcatcher"]
    assert mailpit["image"].startswith("axllent/mailpit")
