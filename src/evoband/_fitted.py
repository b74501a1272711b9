"""What :func:`evoband.fit` returns: the population, each member able to give its trained network,
and the predictor the search delivered.

:meth:`FittedMember.model` retrains a member's configuration on the whole training split by the
one retrain function (as ``main.py -c cfg -t True``), for the epochs and with the learning-rate
cycles it was selected at, along its lineage when it inherited weights; it scores it on the test
split and caches it. :attr:`Population.predictor` loads the delivered predictor from the run
directory.
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
from .training._data import DataSource, channel_stats, normalize
from .training._loop import predict
from .training._predictor import EnsembleNetwork, load_network
from .training._results import Result
from .training._retrain import retrain
from .training._target import Task

if TYPE_CHECKING:
    from .search._final import Delivered
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
    training_record: dict[str, Any] | None = field(default=None, repr=False)
    """Its lineage and LR cycles when it inherited weights in the search (its retrain follows
    the lineage, see :mod:`evoband.training._lineage`); None: it trained from scratch."""
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

        The configuration is retrained on the whole training split by the one retrain function
        (:func:`evoband.training.retrain`, as ``main.py -c cfg -t True`` does): for
        :attr:`epochs` with :attr:`segments` and the member's seed, along its lineage when it
        inherited weights, then scored on the test split (:attr:`test_result`). Its inputs are
        images normalised with :meth:`stats`.
        """
        if self._model is None:
            trained = retrain(
                self.config,
                self.epochs,
                task=self._tasks.get(),
                seed=self.member.seed,
                segments=self.segments,
                record=self.training_record,
            )
            result = trained.result
            if trained.model is None:
                raise EvobandError(
                    f"Retraining {self.member.describe()} ended {result.status}"
                    f"{': ' + result.message if result.message else ''}; no network to return."
                )
            self.test_result = result
            self._model = trained.model
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


class FittedPredictor:
    """The predictor a search delivered (its ``ensemble.json`` and weights in the run
    directory): :meth:`model` loads it as one network, :meth:`predict_proba` scores images."""

    def __init__(self, delivered: Delivered, data: DataSource, tasks: RetrainTask) -> None:
        self.delivered, self.data, self._tasks = delivered, data, tasks
        self._model: EnsembleNetwork | None = None

    @property
    def record(self) -> dict[str, Any]:
        """The content of ``ensemble.json``."""
        return self.delivered.record

    @property
    def path(self) -> Path:
        return self.delivered.path

    @property
    def num_params(self) -> int:
        return int(self.record["num_params"])

    def model(self) -> EnsembleNetwork:
        """The predictor as one network (log class probabilities of normalised images)."""
        if self._model is None:
            base, shape = self.path.parent, self.data.input_shape
            networks = [
                [
                    load_network(
                        m["config"],
                        base / f,
                        shape,
                        self.data.n_classes,
                        family=self._tasks.family,
                        device=self._tasks.device,
                    )  # fmt: skip
                    for f in m["weights"]
                ]
                for m in self.record["members"]
            ]
            weights = [m["weight"] for m in self.record["members"]]
            self._model = EnsembleNetwork(networks, weights).to(self._tasks.device).eval()
        return self._model

    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities of uint8 images ``N x C x H x W`` (normalised as in training)."""
        mean, std = channel_stats(self.data.train.images)
        x = normalize(images, mean, std, self._tasks.device)
        return predict(self.model(), x).exp()


class Population(list[FittedMember]):
    """The final population of a search, best first; :attr:`report` says how the search ended
    and :attr:`predictor` is what it delivered (None when it delivered none)."""

    def __init__(
        self,
        members: Iterable[FittedMember],
        report: SearchReport,
        predictor: FittedPredictor | None = None,
    ) -> None:
        super().__init__(members)
        self.report = report
        self.predictor = predictor

    @property
    def best(self) -> FittedMember | None:
        return self[0] if self else None
