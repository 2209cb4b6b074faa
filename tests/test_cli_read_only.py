"""Commands that only show the state database leave it as it was and load only what they use;
commands that change it still migrate and write the configured subscribers."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from crdswatch import __version__
from tests.support.daemon_env import cli, cli_parallel

WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def fingerprint(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def write_config(tmp_path: Path, *names: str) -> Path:
    config = tmp_path / "c.toml"
    config.write_text(f'[state]\ndatabase = "sqlite:///{tmp_path}/state.db"\n' + "".join(
        f'[[subscribers]]\nname = "{n}"\nwebhook_url = "https://hooks.example.org/{n}"\n'
        f'webhook_secret = "{WHSEC}"\ninstruments = ["miri"]\n' for n in names))
    return config


def test_read_only_commands_leave_the_database_byte_identical(tmp_path: Path) -> None:
    config = write_config(tmp_path, "from-config")
    c = ("--config", str(config))
    added = cli("subscribers", "add", "by-hand", "--webhook-url", "https://hooks.example.org/h",
                "--webhook-secret", WHSEC, *c)
    assert added.returncode == 0, added.stderr
    db = tmp_path / "state.db"
    before = fingerprint(db)

    config = write_config(tmp_path, "from-config", "new-in-file")  # the daemon has not restarted yet
    outbox, outbox_json, listed, shown, new, preview = cli_parallel(
        ("outbox", *c), ("outbox", "--json", *c), ("subscribers", "list", "--json", *c),
        ("subscribers", "show", "by-hand", "--json", *c), ("subscribers", "show", "new-in-file", "--json", *c),
        ("preview", "--subscriber", "from-config", "--activation", "jwst_0541.pmap", *c))
    assert fingerprint(db) == before
    assert outbox.returncode == 0 and "pending: 0" in outbox.stdout, outbox.stderr
    assert json.loads(outbox_json.stdout) == {"counts": {"pending": 0, "leased": 0, "sent": 0, "dead": 0}, "rows": []}
    # Shown as the daemon will have them after its next start, without writing that now.
    assert [s["name"] for s in json.loads(listed.stdout)] == ["by-hand", "from-config", "new-in-file"]
    assert json.loads(shown.stdout)["origin"] == "cli"
    assert json.loads(new.stdout)["origin"] == "config"
    assert preview.returncode == 2 and "not an activation in the state database" in preview.stderr

    # A command that changes state writes the file's subscribers, as the daemon's start does.
    removed = cli("subscribers", "remove", "by-hand", *c)
    assert removed.returncode == 0, removed.stderr
    assert fingerprint(db) != before
    listed_after = json.loads(cli("subscribers", "list", "--json", *c).stdout)
    assert [s["name"] for s in listed_after] == ["from-config", "new-in-file"]


def test_a_read_only_command_on_a_database_not_set_up_says_so_and_creates_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path, "from-config")
    db = tmp_path / "state.db"
    missing, listed = cli_parallel(("outbox", "--config", str(config)),
                                   ("subscribers", "list", "--config", str(config)))
    for out in (missing, listed):
        assert out.returncode == 2
        assert "the state database" in out.stderr and "does not exist yet" in out.stderr, out.stderr
        assert "crdswatch run" in out.stderr
    assert not db.exists()

    import sqlite3

    sqlite3.connect(db).close()  # a file, but no schema
    empty = cli("outbox", "--json", "--config", str(config))
    assert empty.returncode == 2 and "has not been set up (migrated) yet" in empty.stderr, empty.stderr
    assert empty.stdout == "" and db.stat().st_size == 0


def _modules_after(*argv: str) -> set[str]:
    code = ("import runpy, sys\nsys.argv = ['crdswatch', *sys.argv[1:]]\n"
            "try:\n    runpy.run_module('crdswatch', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "sys.stderr.write('\\nLOADED=' + ','.join(sorted(sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60, check=False)
    return set(proc.stderr.rsplit("LOADED=", 1)[1].strip().split(","))


def test_outbox_loads_neither_the_daemon_nor_the_migrations(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    assert cli("subscribers", "add", "x", "--webhook-url", "https://h.example.org", "--webhook-secret", WHSEC,
               "--config", str(config)).returncode == 0
    heavy = {"alembic", "httpx", "aiosmtplib", "jinja2", "structlog", "crdswatch.service.runtime",
             "crdswatch.service.daemon", "crdswatch.app.poll", "crdswatch.channels", "crdswatch.sources.crds"}
    full = _modules_after("outbox", "--config", str(config))  # the text listing: the full command line
    assert "crdswatch.store.core" in full  # it did read the store
    assert full & heavy == set()
    assert not any(m.startswith(("crdswatch.service", "crdswatch.app", "crdswatch.channels")) for m in full)
    # --json on SQLite: cli.fast reads it with sqlite3 alone (tests/test_cli_fast.py: the same output)
    fast = _modules_after("outbox", "--json", "--config", str(config))
    assert "crdswatch.cli.fast" in fast
    assert fast & (heavy | {"sqlalchemy", "pydantic", "typer", "crdswatch.store.core", "crdswatch.config"}) == set()


def test_version_needs_no_cli_framework() -> None:
    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout == f"crdswatch {__version__}\n"
    loaded = _modules_after("--version")
    assert "crdswatch.cli.entry" in loaded
    assert loaded & {"typer", "click", "rich", "pydantic", "crdswatch.cli.main"} == set()
