"""The package's folders are layers: the import contracts in pyproject.toml hold, and can fail.

import-linter checks them (`lint-imports` from the repository root does the same). The contracts:
arrows point down cli → devtools → service → app → channels | sources | store → config → render →
notices → contexts → model | errors | limits → redact; the pure layers import no network, mail,
database or process library; only cli/ imports devtools/; no import cycles between sibling modules.
docs/architecture.md describes the tree these contracts keep.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import crdswatch

REPO = Path(__file__).resolve().parent.parent
PACKAGE = Path(crdswatch.__file__).resolve().parent

_LINT = (
    "import sys; from importlinter.cli import lint_imports; "
    "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))"
)


def _lint(root: Path, package_parent: Path) -> subprocess.CompletedProcess[str]:
    """Run import-linter in a fresh interpreter so it analyses the `crdswatch` under `package_parent`."""
    return subprocess.run(
        [sys.executable, "-c", _LINT], check=False, cwd=root, capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": str(package_parent), "PATH": "/usr/bin:/bin"},
    )


def test_the_import_contracts_hold() -> None:
    result = _lint(REPO, PACKAGE.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


def test_a_wrong_import_breaks_the_contracts(tmp_path: Path) -> None:
    """A copy of the package with deliberately wrong imports: each contract names its culprit."""
    copy = tmp_path / "daemon" / "crdswatch"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "data", "migrations"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    # A renderer that reaches into a channel (and so into httpx), and a store that uses the demo.
    (copy / "render" / "wrong.py").write_text("from crdswatch.channels.webhook import WebhookChannel\n")
    (copy / "store" / "wrong.py").write_text("import crdswatch.devtools.demo\n")
    # A cycle between two sibling modules of the pure diff.
    (copy / "contexts" / "wrong_a.py").write_text("import crdswatch.contexts.wrong_b\n")
    (copy / "contexts" / "wrong_b.py").write_text("import crdswatch.contexts.wrong_a\n")
    result = _lint(tmp_path, tmp_path / "daemon")
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "0 kept, 4 broken" in out
    assert "crdswatch.render is not allowed to import crdswatch.channels" in out
    assert "crdswatch.render.wrong -> crdswatch.channels.webhook" in out
    assert "crdswatch.render is not allowed to import httpx" in out
    assert "crdswatch.store.wrong -> crdswatch.devtools.demo" in out
    assert "No cycles are allowed in crdswatch.contexts" in out


_HEAVY = ("httpx", "aiosmtplib", "sqlalchemy", "standardwebhooks", "psycopg", "aiosmtpd", "starlette")


def _loaded_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(PACKAGE.parent), "PATH": "/usr/bin:/bin"}, check=True)
    return set(result.stdout.split())


def test_render_loads_no_network_mail_or_database_library() -> None:
    assert not _loaded_after("import crdswatch.render") & set(_HEAVY)
    # Every renderer, used: the e-mail message, Slack blocks, webhook JSON, the feed and the report.
    everything = (
        "import crdswatch.render as r\n"
        "from crdswatch.render import atom, email_headers, report, subject\n"
        "from datetime import datetime, timezone\n"
        "now = datetime(2026, 1, 1, tzinfo=timezone.utc)\n"
        "n = r.sample_notice(now)\n"
        "r.email_message(n, sender='a@example.org', to=['b@example.org'], message_id='<x@example.org>',\n"
        "                date=now, list_id='x.example.org')\n"
        "r.slack_payloads(n); r.webhook_payload(n)\n"
        "atom.atom_feed([], feed_url='http://x/feed.atom', server_names={}, updated=now)\n"
    )
    loaded = _loaded_after(everything)
    assert "jinja2" in loaded and "slack_sdk" in loaded  # the probe really rendered
    assert not loaded & set(_HEAVY), loaded & set(_HEAVY)


def test_pure_layers_load_no_network_mail_or_database_library() -> None:
    loaded = _loaded_after(
        "import crdswatch.contexts.diff, crdswatch.contexts.library, crdswatch.contexts.history\n"
        "import crdswatch.notices.match, crdswatch.notices.summary, crdswatch.notices.codec\n"
    )
    assert not loaded & set(_HEAVY), loaded & set(_HEAVY)


def test_ast_parse_runs_one_call_at_a_time_across_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """CPython 3.11's AST constructor keeps its recursion depth per interpreter (gh-106905): two
    threads parsing at once can fail a poll with a SystemError. Every parse of the pure layers goes
    through contexts.astparse, one at a time."""
    import ast
    import contextlib
    import threading
    import time

    from crdswatch.contexts import astparse
    from crdswatch.contexts.headerexpr import compile_expr
    from crdswatch.contexts.mappings import parse_mapping
    from crdswatch.errors import MappingSyntaxError

    inside, most = [0], [0]
    real = ast.parse

    def slow(*args: object, **kwargs: object) -> object:
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        time.sleep(0.002)  # lets the other threads run, as a collection inside a parse can
        inside[0] -= 1
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(astparse.ast, "parse", slow)
    text = "header = {'name': 'x.rmap', 'parkey': (), 'sha1sum': ''}\nselector = {}\n"

    def work() -> None:
        for _ in range(10):
            compile_expr("EXP_TYPE == 'NRS_IFU'")
            with contextlib.suppress(MappingSyntaxError):  # only the overlap matters here
                parse_mapping("x.rmap", text)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1
