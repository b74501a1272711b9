"""Where relative paths resolve: defaults (runs/, micro17flower/) against the repository root."""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parents[1]
"""The evoband package folder (this module lives in its core/)."""


def repo_root() -> Path:
    """The checkout's root (the folder holding ``src/``), or the cwd for an installed package."""
    candidate = _PACKAGE_DIR.parent.parent
    if (candidate / "src" / "evoband").is_dir():
        return candidate
    return Path.cwd()


def resolve_default(path: str | Path) -> Path:
    """A default path: absolute as is, relative against the repository root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else repo_root() / p


def resolve_user(path: str | Path) -> Path:
    """A path the user typed: as given when it exists from the cwd, else against the repo root.

    Users of the reference scripts run them both from the repository root and from ``src/``.
    """
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    rooted = repo_root() / p
    return rooted if rooted.exists() else p
