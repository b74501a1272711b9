"""Ensembles of a population's best members: averaged softmax outputs, scored on the test split."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._fit import as_data_source
from ._fitted import FittedMember
from .core._errors import ConfigError, DataError
from .report._ensembles import EnsembleResult, combine, ensemble_size
from .training._data import normalize
from .training._loop import predict


def ensemble(
    members: Sequence[FittedMember], k: int | str = "half", data: Any = None
) -> EnsembleResult:
    """Average the softmax outputs of the ``k`` best feasible members on a test split.

    Each member's network is retrained on first use (see :meth:`FittedMember.model`).

    Args:
        members: a population, best first (as :func:`evoband.fit` returns it).
        k: how many of its feasible members to average, best first; ``"half"``: half the
            population (rounded up). Fewer are used when fewer are feasible.
        data: whose test split to score (any form :func:`evoband.fit` takes, with the same
            classes); default the members' own data. Inputs are normalised as in training.

    Raises:
        ConfigError: ``k`` is invalid or no member is feasible.
    """
    n = ensemble_size(k, len(members))
    chosen = [m for m in members if m.feasible][:n]
    if not chosen:
        raise ConfigError("No member of the population is feasible; there is nothing to ensemble.")
    source = chosen[0].data if data is None else as_data_source(data)
    if source.classes != chosen[0].data.classes:
        raise DataError(
            f"The data's classes {list(source.classes)[:5]}... differ from the members' "
            f"{list(chosen[0].data.classes)[:5]}...; score the ensemble on data of the same classes."
        )
    if len(source.test) == 0:
        raise DataError(f"The data set {source.name} has no test split to score the ensemble on.")
    labels = source.test.labels
    probabilities = []
    for member in chosen:
        model = member.model()
        mean, std = member.stats()
        x = normalize(source.test.images, mean, std, next(model.parameters()).device)
        probabilities.append(predict(model, x).softmax(dim=1))
    return combine(
        [m.member_id for m in chosen], probabilities, labels, sum(m.num_params for m in chosen)
    )
