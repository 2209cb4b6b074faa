"""Extract the bundled JWST CRDS snapshot (mappings + server_config) for tests, demos and replay."""

from __future__ import annotations

import stat
import tarfile
from importlib import resources
from pathlib import Path

__all__ = ["BUNDLED_TARBALL", "bundled_tarball_path", "crds_cache_layout", "extract_bundled"]

BUNDLED_TARBALL = "jwst-ops.tar.xz"


def bundled_tarball_path() -> Path:
    """Path of the tarball shipped in `crdswatch/data/`."""
    return Path(str(resources.files("crdswatch") / "data" / BUNDLED_TARBALL))


def _writable_data_filter(member: tarfile.TarInfo, dest_path: str) -> tarfile.TarInfo:
    # The snapshot was archived from a read-only tree; keep the "data" filter's safety checks
    # but give the owner write access so temporary directories can be cleaned up afterwards.
    member = tarfile.data_filter(member, dest_path)
    if member.mode is not None:
        extra = stat.S_IRWXU if member.isdir() else stat.S_IRUSR | stat.S_IWUSR
        member = member.replace(mode=member.mode | extra, deep=False)
    return member


def extract_bundled(dest: Path, tarball: Path | None = None) -> Path:
    """Extract the snapshot into `dest/jwst/` and return that directory.

    Afterwards `dest/jwst/mappings/<name>` and `dest/jwst/config/server_config` exist.
    """
    root = Path(dest) / "jwst"
    root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball or bundled_tarball_path(), "r:xz") as archive:
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
