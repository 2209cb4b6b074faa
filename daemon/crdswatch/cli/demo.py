"""The demo command: real JWST history replayed through the real daemon, offline."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from crdswatch.cli.common import fail
from crdswatch.errors import CrdswatchError


def demo(
    out: Annotated[Path, typer.Option(help="Where the demo writes its state, mailbox and feed.")] = Path("demo-out"),
    count: Annotated[int, typer.Option(help="How many real activations to replay.")] = 15,
    follow: Annotated[bool, typer.Option("--follow", help="Keep the daemon running afterwards (Ctrl-C ends).")] = False,
) -> None:
    """The whole job offline: real JWST history (2019) replayed into the real daemon.

    Starts a replay CRDS server and a local mailbox on loopback, runs the daemon with four example
    subscribers, activates the last COUNT real contexts one by one, and shows what was delivered.
    """
    import asyncio

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from crdswatch.devtools.demo import first_notice_text, run_demo

    _configure_logging_quiet()
    console = Console(soft_wrap=True)
    with Progress(TextColumn("replaying activations"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.description}"), console=console, transient=False) as bar:
        task = bar.add_task("", total=count)

        def step(done: int, total: int, context: str) -> None:
            bar.update(task, completed=done, total=total, description=context)

        try:
            def announce(url: str) -> None:
                bar.console.print(f"\n[bold]Status page[/bold]  {url}   (archive {url}activations, lists "
                                  f"{url}lists; the daemon keeps running, Ctrl-C ends)")

            result = asyncio.run(run_demo(out, count, follow=follow, progress=step, announce=announce))
        except (CrdswatchError, TimeoutError, OSError) as exc:
            fail(str(exc))
    console.print(f"\n[bold]{len(result.activations)} activations processed[/bold]: "
                  f"{result.activations[0]} … {result.activations[-1]}")
    console.print("[bold]Notices per subscriber[/bold] (sent now / held for the daily digest):")
    for name in sorted(set(result.sent) | set(result.held)):
        console.print(f"  {name:<20} {result.sent.get(name, 0):>3} sent   {result.held.get(name, 0):>3} held"
                      f"   ({result.rules.get(name, 0)} rule changes)")
    if result.dead:
        console.print(f"[red]{result.dead} deliveries failed for good (see crdswatch outbox)[/red]")
    console.print(f"\n[bold]Where to look[/bold]\n  mailbox   {out}/Maildir/new/  ({len(result.mails)} messages)\n"
                  f"  feed      {out}/feed.atom  ({result.feed_entries} entries)\n"
                  f"  outbox    crdswatch outbox --config {out}/crdswatch.toml\n"
                  f"  preview   crdswatch preview --config {out}/crdswatch.toml --subscriber nirspec-team "
                  f"--activation {result.activations[-1]}")
    if result.showcase is not None:
        console.rule("one of the notices delivered")
        sys.stdout.write(first_notice_text(result.showcase) + "\n")
    if result.dead or not result.mails:
        raise typer.Exit(1)


def _configure_logging_quiet() -> None:
    import logging

    import structlog

    # The demo shows a progress bar and a summary; the daemon's info lines would bury them.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def register(app: typer.Typer) -> None:
    app.command()(demo)
