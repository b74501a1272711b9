"""``ensemble.json``: the file that describes the predictor a search delivers.

A JSON object with ``"format": "evoband-ensemble"`` and a ``format_version``; the predictor's
members (each with its configuration, epochs, LR cycles, weight, parameters, seed, out-of-fold
scores, whether its networks are its fold models or a retrain on all training images, and the
files of its weights, relative to the run directory), their summed parameters, the predictor's
out-of-fold scores, the constraints, and the data it was trained on (with a fingerprint).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core._errors import ConfigError
from ..core._files import write_json

ENSEMBLE = "ensemble.json"
ENSEMBLE_FORMAT = "evoband-ensemble"
ENSEMBLE_FORMAT_VERSION = 1
PREDICTOR_DIR = "predictor"
"""The folder of the run directory that holds the predictor's weights."""

MEMBER_KEYS = ("member_id", "config", "epochs", "segments", "weight", "num_params", "seed", "form")
"""What every member of ``ensemble.json`` must have."""
FORMS = ("folds", "retrain")
"""A member's networks: its fold models from the search, or one retrain on all training images."""


def write_predictor_record(run_dir: Path, record: Mapping[str, Any]) -> Path:
    """Write ``ensemble.json`` atomically (with the format and its version)."""
    path = Path(run_dir) / ENSEMBLE
    write_json(
        path,
        {"format": ENSEMBLE_FORMAT, "format_version": ENSEMBLE_FORMAT_VERSION, **record},
    )
    return path


def is_predictor_record(data: Any) -> bool:
    """Whether a loaded JSON value is an ``ensemble.json`` (told apart from a configuration by
    its content)."""
    return isinstance(data, Mapping) and data.get("format") == ENSEMBLE_FORMAT


def read_predictor_record(path: str | Path) -> dict[str, Any]:
    """The content of an ``ensemble.json``, checked; a ConfigError naming what is wrong."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path} does not exist.") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is not a readable JSON file ({exc}).") from exc
    check_predictor_record(data, path)
    return data


def check_predictor_record(data: Any, path: str | Path) -> None:
    """Raise a ConfigError naming the first problem of an ``ensemble.json``'s content."""
    if not is_predictor_record(data):
        raise ConfigError(f'{path} is not an evoband ensemble (no "format": "{ENSEMBLE_FORMAT}").')
    version = data.get("format_version")
    if not isinstance(version, int) or version > ENSEMBLE_FORMAT_VERSION:
        raise ConfigError(
            f"{path} has format_version {version!r}; this evoband reads up to "
            f"{ENSEMBLE_FORMAT_VERSION}: upgrade evoband."
        )
    members = data.get("members")
    if not isinstance(members, list) or not members:
        raise ConfigError(f"{path} lists no members: an ensemble needs at least one.")
    for i, member in enumerate(members):
        missing = [k for k in MEMBER_KEYS if not isinstance(member, Mapping) or k not in member]
        if missing:
            raise ConfigError(f"{path}: member {i} lacks {', '.join(missing)}.")
        if member["form"] not in FORMS:
            raise ConfigError(
                f"{path}: member {i} has form {member['form']!r}, but must be one of {FORMS}."
            )
        weight = member["weight"]
        if not isinstance(weight, int | float) or isinstance(weight, bool) or not weight > 0:
            raise ConfigError(f"{path}: member {i} has weight {weight!r}, but must be > 0.")
        if not isinstance(member["config"], Mapping):
            raise ConfigError(f"{path}: member {i}'s config is not an object.")
        if not isinstance(member["epochs"], int) or member["epochs"] < 1:
            raise ConfigError(
                f"{path}: member {i} has epochs {member['epochs']!r}; need an int >= 1."
            )
    for key in ("data",):
        if not isinstance(data.get(key), Mapping):
            raise ConfigError(f"{path} has no {key!r} object.")
