"""What :func:`evoband.fit` returns: the population, each member able to give its trained network.

A search deletes the checkpoints of members it will not train further, so a member's network is
not kept: :meth:`FittedMember.model` retrains its configuration from scratch on the whole training
split, for the epochs and with the learning-rate cycles it was selected at (the same code path as
``main.py -c cfg -t True``), scores it on the test split, and caches it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .core._errors import DataError, EvobandError
from .nets._export import ExportReport, export_model
from .nets._family import SHIPPED, NetworkFamily
from .search._member import Member
from .search._settings import SearchSettings
from .training._constraints import Constraints
from .training._data import DataSource, channel_stats
from .training._results import Result
from .training._target import Task, evaluate

if TYPE_CHECKING:
    from .search._run import SearchReport


def selected_segments(member: Member, settings: SearchSettings) -> list[int]:
    """The LR cycles ``member`` was trained with up to its standing budget
    (:meth:`SearchSettings.lr_segments` of its bracket, cut at that budget)."""
    epochs = member.result.epochs if member.result is not None else settings.max_epochs
    return list(settings.lr_segments(member.bracket, up_to=epochs))


class RetrainTask:
    """One ``Task(data, use_test=True)`` shared by the members of a population, made on first use;
    ``family`` builds their networks (that of the searched space)."""

    def __init__(
        self, data: DataSource, device: torch.device, family: NetworkFamily = SHIPPED
    ) -> None:
        self.data, self.device, self.family = data, device, family
        self._task: Task | None = None

    def get(self) -> Task:
        if self._task is None:
            if len(self.data.test) == 0:
                raise DataError(
                    f"The data set {self.data.name} has no test split; a member's network is "
                    "retrained on the training split and scored on the test split."
                )
            self._task = Task(self.data, use_test=True, device=self.device, family=self.family)
        return self._task


@dataclass(eq=False)
class FittedMember:
    """A member of a finished search, with the data and settings it was searched with.

    Attributes:
        member: the optimizer's member (genotype, lineage, CV results per budget).
        data: the data set.
        settings: the search's settings (they fix the member's LR cycles).
        constraints: the search's constraints.
    """

    member: Member
    data: DataSource
    settings: SearchSettings
    constraints: Constraints
    _tasks: RetrainTask = field(repr=False)
    _model: nn.Module | None = field(default=None, init=False, repr=False)
    test_result: Result | None = field(default=None, init=False, repr=False)
    """The test-split scores of the retrained network, once :meth:`model` has run."""

    @property
    def member_id(self) -> int:
        return self.member.member_id

    @property
    def num_params(self) -> int:
        return self.member.num_params

    @property
    def family(self) -> NetworkFamily:
        """The network family that builds its network (that of the searched space)."""
        return self._tasks.family

    @property
    def result(self) -> Result | None:
        """The CV result that stands for it (see :attr:`evoband.search._member.Member.result`)."""
        return self.member.result

    @property
    def config(self) -> dict[str, Any]:
        """The genotype (the content of an ``opt_cfg.json``)."""
        return dict(self.member.config)

    @property
    def metrics(self) -> dict[str, Any]:
        """The CV scores it was ranked by: top3, top1, precision, num_params, epochs, status."""
        r = self.member.result
        if r is None:
            return {"num_params": self.member.num_params, "status": "pending"}
        return {
            "top3": r.top3,
            "top1": r.top1,
            "precision": r.precision,
            "num_params": r.num_params,
            "epochs": r.epochs,
            "status": str(r.status),
        }

    @property
    def lineage(self) -> dict[str, Any]:
        """How it was made: origin, parents' ids, generation and Hyperband bracket."""
        m = self.member
        return {
            "member_id": m.member_id,
            "origin": str(m.origin),
            "parents": list(m.parents),
            "generation": m.generation,
            "bracket": m.bracket,
        }

    @property
    def feasible(self) -> bool:
        """Whether its CV result meets every constraint."""
        r = self.member.result
        return r is not None and self.constraints.feasible(r)

    @property
    def epochs(self) -> int:
        """The epochs it was selected at (its standing budget)."""
        r = self.member.result
        return r.epochs if r is not None else self.settings.max_epochs

    @property
    def segments(self) -> list[int]:
        """The LR cycles it was selected with (see :func:`selected_segments`)."""
        return selected_segments(self.member, self.settings)

    def stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The channel mean and std (in [0, 1] units) its network's inputs are normalised with."""
        return channel_stats(self.data.train.images)

    def model(self) -> nn.Module:
        """The trained network (in evaluation mode), retrained on the first call and cached.

        The search keeps no weights of finished members, so the configuration is trained from
        scratch on the whole training split for :attr:`epochs` with :attr:`segments` and the
        member's seed, then scored on the test split (:attr:`test_result`). Its inputs are
        images normalised with :meth:`stats`.
        """
        if self._model is None:
            result = evaluate(
                self.config,
                self.epochs,
                task=self._tasks.get(),
                seed=self.member.seed,
                segments=self.segments,
                keep_predictions=True,
            )
            fold = result.folds[0] if result.folds else None
            if not result.ok or fold is None or fold.model is None:
                raise EvobandError(
                    f"Retraining {self.member.describe()} ended {result.status}"
                    f"{': ' + result.message if result.message else ''}; no network to return."
                )
            self.test_result = result
            self._model = fold.model.eval()
        return self._model

    def export(self, path: str | Path) -> ExportReport:
        """Export :meth:`model` as a ``torch.export`` program (see :mod:`evoband.nets._export`) with
        the class names and input normalisation; returns its size and CPU latency per image."""
        mean, std = self.stats()
        return export_model(
            self.model(),
            path,
            classes=self.data.classes,
            mean=mean,
            std=std,
            input_shape=self.data.input_shape,
            extra={
                "config": self.config,
                "member_id": self.member_id,
                "epochs": self.epochs,
                "segments": self.segments,
                "data": self.data.location,
                "network_family": self.family.name,
            },
        )


class Population(list[FittedMember]):
    """The final population of a search, best first; :attr:`report` says how the search ended."""

    def __init__(self, members: Iterable[FittedMember], report: SearchReport) -> None:
        super().__init__(members)
        self.report = report

    @property
    def best(self) -> FittedMember | None:
        return self[0] if self else None
