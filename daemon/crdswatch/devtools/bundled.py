"""Extract the bundled CRDS snapshots (mappings + server_config) for tests, demos and replay.

`jwst-ops.tar.xz`: JWST OPS mappings 2012-2019 with the real activation history.
`hst-ops.tar.xz`: the closures of HST OPS contexts hst_0690, hst_0710 and hst_0725 ... hst_0729
(191 real mappings) and the server's config trimmed to them (398 real activations kept).
"""

from __future__ import annotations

import stat
import tarfile
from importlib import resources
from pathlib import Path

__all__ = ["BUNDLED_HST_CONTEXTS", "BUNDLED_TARBALL", "bundled_tarball_path", "crds_cache_layout", "extract_bundled"]

BUNDLED_TARBALL = "jwst-ops.tar.xz"
BUNDLED_HST_CONTEXTS = ("hst_0690.pmap", "hst_0710.pmap", *(f"hst_07{n}.pmap" for n in range(25, 30)))


def bundled_tarball_path(observatory: str = "jwst") -> Path:
    """Path of the tarball shipped in `crdswatch/data/` (`jwst` or `hst`)."""
    return Path(str(resources.files("crdswatch") / "data" / f"{observatory}-ops.tar.xz"))


def _writable_data_filter(member: tarfile.TarInfo, dest_path: str) -> tarfile.TarInfo:
    # The snapshot was archived from a read-only tree; keep the "data" filter's safety checks
    # but give the owner write access so temporary directories can be cleaned up afterwards.
    member = tarfile.data_filter(member, dest_path)
    if member.mode is not None:
        extra = stat.S_IRWXU if member.isdir() else stat.S_IRUSR | stat.S_IWUSR
        member = member.replace(mode=member.mode | extra, deep=False)
    return member


def extract_bundled(dest: Path, tarball: Path | None = None, observatory: str = "jwst") -> Path:
    """Extract the snapshot into `dest/<observatory>/` and return that directory.

    Afterwards `dest/<observatory>/mappings/<name>` and `.../config/server_config` exist.
    """
    root = Path(dest) / observatory
    root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball or bundled_tarball_path(observatory), "r:xz") as archive:
        archive.extractall(root, filter=_writable_data_filter)
    return root


def crds_cache_layout(root: Path, data: Path, observatory: str = "jwst") -> Path:
    """Make `root` a CRDS cache (`CRDS_PATH`) over extracted `data`, so the `crds` tools can read it.

    The crds client expects `mappings/<obs>/` and `config/<obs>/` under one root; symlinks avoid
    a second copy.
    """
    for part in ("mappings", "config"):
        (root / part).mkdir(parents=True, exist_ok=True)
        link = root / part / observatory
        if not link.exists():
            link.symlink_to(data / part)
    return root
