"""The recovery store: Bytewax's snapshot partitions in a directory."""

from __future__ import annotations

from pathlib import Path

from ..config import Config


def prepare_recovery(cfg: Config) -> bool:
    """Create the recovery store when missing; True when resuming from an existing one."""
    if cfg.recovery_dir is None:
        return False
    from bytewax.recovery import init_db_dir

    path = Path(cfg.recovery_dir)
    if path.is_dir() and any(path.glob("part-*.sqlite3")):
        return True
    path.mkdir(parents=True, exist_ok=True)
    init_db_dir(path, 1)
    return False
