"""Rebuild tests/data/hst-golden.tar.xz: the real HST mappings the golden notices need, and their history.

Only the mappings a diff of each pair actually reads (the two contexts and the imaps and rmaps
that differ) are kept, so the subset is small. Run from the repository root:
  python tests/support/make_hst_subset.py /work/shared/crds-data/hst
"""

from __future__ import annotations

import io
import json
import sys
import tarfile
from pathlib import Path

from crdswatch.contexts.diff import diff_contexts
from crdswatch.contexts.history import load_server_config
from crdswatch.contexts.library import MappingLibrary

PAIRS = (("hst_0701.pmap", "hst_0702.pmap"), ("hst_0722.pmap", "hst_0723.pmap"), ("hst_0723.pmap", "hst_0724.pmap"))
OUT = Path(__file__).parents[1] / "data" / "hst-golden.tar.xz"


def main(root: Path) -> None:
    folder = root / "mappings"
    read: set[str] = set()

    def load(name: str) -> str:
        read.add(name)
        return (folder / name).read_text(encoding="utf-8")

    library = MappingLibrary(load)
    for old, new in PAIRS:
        diff_contexts(old, new, library)
    wanted = {n for pair in PAIRS for n in pair}
    history = [{"date": a.date, "context": a.context, "description": a.description}
               for a in load_server_config(root / "config" / "server_config").activations() if a.context in wanted]
    with tarfile.open(OUT, "w:xz") as archive:
        for name in sorted(read):
            archive.add(folder / name, arcname=f"mappings/{name}")
        data = json.dumps(history, indent=1).encode()
        info = tarfile.TarInfo("history.json")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    print(f"{OUT}: {len(read)} mappings, {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
