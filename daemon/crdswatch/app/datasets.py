"""Per activation, which datasets' best references change (the I/O around notices.datasets)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import structlog

from crdswatch.contexts.bestref import BoundContext, Rules
from crdswatch.contexts.pending import Pending
from crdswatch.notices.datasets import Dataset, SelectionChange, dataset_from_config, selection_changes
from crdswatch.notices.subscriptions import Subscription
from crdswatch.sources.crds import CrdsSource

__all__ = ["dataset_selections", "resolve_datasets"]

log = structlog.get_logger(__name__)


def resolve_datasets(sub: Subscription) -> list[Dataset]:
    """The subscriber's datasets, headers read from their FITS files where a table names one."""
    out: list[Dataset] = []
    for item in sub.datasets:
        header: dict[str, Any] | None = None
        if item.get("fits"):
            from crdswatch.sources.datasetheader import DatasetHeaderError, read_fits_dataset_header

            try:
                header = read_fits_dataset_header(Path(str(item["fits"])))
            except DatasetHeaderError as exc:
                log.warning("dataset_unreadable", subscriber=sub.name, error=str(exc))
                continue
        out.append(dataset_from_config(item, header))
    return out


async def dataset_selections(src: CrdsSource, item: Pending, subscriptions: Iterable[Subscription]
                             ) -> dict[str, list[SelectionChange]]:
    """Subscriber name -> the selections of its datasets that differ between the two contexts."""
    wanted = {sub.name: resolve_datasets(sub) for sub in subscriptions if sub.datasets}
    wanted = {name: ds for name, ds in wanted.items() if ds}
    if not wanted:
        return {}
    instruments = {d.instrument for ds in wanted.values() for d in ds if d.instrument}
    new_name, old_name = item.activation.context, item.previous
    for context in filter(None, (old_name, new_name)):
        await src.load_for_bestrefs(context, instruments)
    rules = _rules(src)

    def compute() -> dict[str, list[SelectionChange]]:
        new = rules.context(new_name)
        old: BoundContext | None = rules.context(old_name) if old_name else None
        return {name: selection_changes(old, new, ds) for name, ds in wanted.items()}

    return await asyncio.to_thread(compute)  # CPU work off the event loop


def _rules(src: CrdsSource) -> Rules:
    # Compiled rmaps are kept with the source: consecutive contexts share almost all of them.
    if not isinstance(src.bestref_rules, Rules):
        src.bestref_rules = Rules(src.library)
    return src.bestref_rules
