"""The lowest layer: the package's errors, the one validator of given values, the one atomic
file writer, where relative paths resolve, and the version. Everything else in evoband may import it; it imports nothing of evoband."""

from __future__ import annotations

from ._errors import (
    ClusterError,
    ConfigError,
    DataError,
    EnvironmentFailure,
    EvobandError,
    LedgerDamaged,
    StoreError,
    StoreWriteError,
    write_failure,
)
from ._files import builtin, json_default, write_atomic, write_json, write_text
from ._paths import repo_root, resolve_default, resolve_user
from ._validate import (
    invalid,
    is_int,
    is_number,
    require,
    require_choice,
    require_int,
    require_name,
    require_number,
)
from ._version import __version__

__all__ = [
    "ClusterError",
    "ConfigError",
    "DataError",
    "EnvironmentFailure",
    "EvobandError",
    "LedgerDamaged",
    "StoreError",
    "StoreWriteError",
    "__version__",
    "builtin",
    "invalid",
    "is_int",
    "is_number",
    "json_default",
    "repo_root",
    "require",
    "require_choice",
    "require_int",
    "require_name",
    "require_number",
    "resolve_default",
    "resolve_user",
    "write_atomic",
    "write_failure",
    "write_json",
    "write_text",
]
