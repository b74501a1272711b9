"""The one training and evaluation loop, used by the target, main.py and everything else.

Training continues from a state (model, optimizer, epochs done) for more epochs. The randomness
of epoch ``e`` (batch order, augmentation, dropout) is seeded from ``(seed, e)`` and the learning
rate of every step is a pure function of the epoch position and the schedule's segments (see
:func:`learning_rate`), so training 2 + 3 epochs from a checkpoint gives the same network as 5
epochs in one go.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core._validate import invalid, require_choice
from ..nets._family import SHIPPED, NetworkFamily
from ..nets._towers import tower_mean
from ._allocator import tune_allocator
from ._data import augment, batch_indices
from ._metrics import Metrics, compute_metrics
from ._results import Status

EpochCallback = Callable[[int, float, float], None]
"""Called after each epoch with (epochs done, mean training loss, training top-1 accuracy)."""

OK = Status.OK
"""The name of :attr:`Status.OK` before :class:`evoband.training._results.Status`; benchmarks still use it."""


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; other names are passed to torch."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (seed, fold, epoch, ...)."""
    # the part count goes first: SeedSequence ignores trailing zeros, so (1, 2) would equal (1, 2, 0)
    entropy = [len(parts), *(int(p) for p in parts)]
    return int(np.random.SeedSequence(entropy).generate_state(2, np.uint64)[0] >> np.uint64(1))


PARALLEL_MACS_PER_BATCH = 2e9
"""Below this many multiply-accumulates per training batch a model trains on one CPU thread:
intra-op threads cost more in synchronisation than they save, and far more (tens of times) when
another process keeps the other cores busy (see benchmarks/epoch_speed.py)."""


def cpu_threads_for(
    config: Mapping[str, Any],
    input_shape: tuple[int, ...],
    n_classes: int,
    family: NetworkFamily = SHIPPED,
) -> int:
    """CPU threads worth giving to training this model (of ``family``): 1 for small work, all
    for large."""
    macs = family.macs_per_sample(config, input_shape, n_classes)
    per_batch = macs * int(config["batch_size"])
    return 1 if per_batch < PARALLEL_MACS_PER_BATCH else torch.get_num_threads()


def _threads_for(
    config: Mapping[str, Any], x: torch.Tensor, n_classes: int, family: NetworkFamily
) -> int:
    if x.device.type != "cpu":
        return torch.get_num_threads()
    return cpu_threads_for(config, tuple(int(n) for n in x.shape[1:]), n_classes, family)


@contextlib.contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """Run a block with ``n`` intra-op CPU threads, restoring the previous count afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class TrainState:
    """Everything needed to continue training: model, optimizer, epochs done.

    The learning rate needs no state of its own: it is recomputed for every step.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    epochs_done: int = 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epochs_done": self.epochs_done,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epochs_done = int(state["epochs_done"])


WARMUP_FRACTION = 0.15
"""Share of a one-cycle segment spent warming up linearly from a tenth of the peak rate."""

FINAL_LR_FACTOR = 1e-2
"""Where cosine and one-cycle segments end, relative to the peak rate."""


def learning_rate(config: Mapping[str, Any], position: float, segments: Sequence[int]) -> float:
    """The learning rate at ``position`` (epochs done, fractional) under the config's schedule.

    A schedule is planned over *segments*: the epochs at which a Hyperband member is scored
    (e.g. ``(4, 8, 16, 32)``). Within each segment ``[start, end)`` a ``cosine`` schedule decays
    from ``learning_rate_init`` to ``FINAL_LR_FACTOR`` of it and ``onecycle`` warms up first, so
    a member is scored at every rung as a network trained for that budget would be, and the next
    rung restarts the cycle from the trained weights (as warm restarts do). ``constant`` (the
    course default) ignores the segments.
    """
    peak = float(config["learning_rate_init"])
    kind = config.get("lr_schedule", "constant")
    if kind == "constant":
        return peak
    start = 0
    for end in sorted(set(segments)):
        if position < end:
            break
        start = end
    else:
        return peak * FINAL_LR_FACTOR
    t = (position - start) / max(end - start, 1e-9)
    floor = peak * FINAL_LR_FACTOR
    if kind == "onecycle":
        if t < WARMUP_FRACTION:
            return peak * (0.1 + 0.9 * t / WARMUP_FRACTION)
        t = (t - WARMUP_FRACTION) / (1 - WARMUP_FRACTION)
    else:
        require_choice("lr_schedule", kind, ("onecycle", "cosine"))
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * t))


def make_optimizer(config: Mapping[str, Any], params: Any) -> torch.optim.Optimizer:
    """The optimizer the config names, at its learning rate (and weight decay, if searched)."""
    lr = float(config["learning_rate_init"])
    name = config.get("optimizer", "adamw")
    # the course space has no weight decay, the extended space always searches it
    searched = "weight_decay" in config and config.get("use_weight_decay", True) is not False
    decay = float(config["weight_decay"]) if searched else 0.0
    params = list(params)
    # the fused kernels update all tensors at once (about 20% faster for tiny models on the CPU)
    fused = bool(params) and params[0].device.type in ("cpu", "cuda")
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=decay, fused=fused)
    if name == "adamw":  # torch's default decay of 0.01 unless the space searches it
        return torch.optim.AdamW(
            params, lr=lr, weight_decay=decay if searched else 0.01, fused=fused
        )
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=decay)
    if name == "adad":
        return torch.optim.Adadelta(params, lr=lr, weight_decay=decay)
    raise invalid("optimizer", name, "one of 'adam', 'adamw', 'sgd', 'adad'")


def make_state(
    config: Mapping[str, Any],
    input_shape: tuple[int, ...],
    n_classes: int,
    *,
    seed: int,
    device: torch.device,
    family: NetworkFamily = SHIPPED,
) -> TrainState:
    """A freshly initialised model of ``family`` (weights fixed by ``seed``) with its optimizer."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = family.build(config, input_shape, n_classes)
    model.to(device)
    optimizer = make_optimizer(config, model.parameters())
    return TrainState(model, optimizer, 0)


def _loss_fn(
    config: Mapping[str, Any], n_classes: int
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if config.get("train_criterion", "cross_entropy") == "mse":

        def mse(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            target = nn.functional.one_hot(y, n_classes).to(logits.dtype)
            return nn.functional.mse_loss(logits.softmax(dim=1), target)

        return mse
    smoothing = float(config.get("label_smoothing", 0.0))
    return lambda logits, y: nn.functional.cross_entropy(logits, y, label_smoothing=smoothing)


@dataclass(frozen=True)
class Distillation:
    """Teachers' soft targets for the training images (knowledge distillation): the loss is
    ``(1 - weight) * label loss + weight * temperature**2 * KL(targets || softmax(logits / temperature))``.
    """

    targets: torch.Tensor
    """Teacher probabilities at ``temperature``, one row per training image, in its order."""
    weight: float = 0.9
    temperature: float = 4.0

    def loss(
        self, logits: torch.Tensor, label_loss: torch.Tensor, idx: torch.Tensor
    ) -> torch.Tensor:
        """The training loss of a batch of the training images at indices ``idx``."""
        t = self.temperature
        student = (logits / t).log_softmax(dim=1)
        kl = nn.functional.kl_div(student, self.targets[idx], reduction="batchmean")
        return (1 - self.weight) * label_loss + self.weight * t * t * kl


def _n_outputs(model: nn.Module) -> int:
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    return int(last.out_features)


@dataclass(frozen=True)
class TrainOutcome:
    """How a call to :func:`train` ended."""

    status: Status
    epochs_done: int
    loss: float


def train(
    state: TrainState,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    config: Mapping[str, Any],
    epochs: int,
    seed: int,
    segments: Sequence[int] = (),
    deadline: float | None = None,
    on_epoch: EpochCallback | None = None,
    family: NetworkFamily = SHIPPED,
    distill: Distillation | None = None,
) -> TrainOutcome:
    """Train ``state`` in place until it has done ``epochs`` epochs in total.

    Args:
        state: model, optimizer, schedule and epochs already done.
        x, y: normalised training images and labels, already on the model's device.
        config: the genotype (batch size, criterion, augmentation).
        epochs: the total number of epochs to reach (not the number to add).
        seed: seeds each epoch's randomness together with the epoch index.
        segments: the epochs the LR schedule is planned to end a cycle at (see
            :func:`learning_rate`); ``epochs`` is always one of them. Continuing a state gives
            the same network as training in one go when both calls pass the same segments.
        deadline: a ``time.monotonic()`` value; training stops there as ``timed_out``.
        on_epoch: progress callback.
        family: the network family of ``config`` (it sizes the CPU threads).
        distill: train towards these teachers' soft targets as well as the labels.

    Returns:
        ``ok``, ``diverged`` (a NaN or inf loss; training stopped at once) or ``timed_out``.
    """
    tune_allocator()  # reused buffers instead of fresh pages every step (see evoband.training._allocator)
    n_classes = _n_outputs(state.model)
    loss_fn = _loss_fn(config, n_classes)
    mean_loss = float("nan")
    plan = tuple(sorted({*segments, epochs}))
    if distill is not None:
        distill = replace(distill, targets=distill.targets.to(x.device))
    with cpu_threads(_threads_for(config, x, n_classes, family)):
        while state.epochs_done < epochs:
            status, mean_loss, accuracy = _train_epoch(
                state, x, y, config, seed, plan, deadline, loss_fn, distill
            )
            if status != Status.OK:
                return TrainOutcome(status, state.epochs_done, mean_loss)
            state.epochs_done += 1
            if on_epoch is not None:
                on_epoch(state.epochs_done, mean_loss, accuracy)
    return TrainOutcome(Status.OK, state.epochs_done, mean_loss)


def _train_epoch(
    state: TrainState,
    x: torch.Tensor,
    y: torch.Tensor,
    config: Mapping[str, Any],
    seed: int,
    plan: Sequence[int],
    deadline: float | None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    distill: Distillation | None,
) -> tuple[Status, float, float]:
    """One epoch (number ``state.epochs_done``): status, mean loss (or the bad loss), accuracy."""
    epoch = state.epochs_done
    batch_size = int(config["batch_size"])
    n_batches = math.ceil(len(y) / batch_size)
    flip = 0.5 if config.get("aug_flip") else 0.0
    shift = int(config.get("aug_shift", 0))
    device = x.device
    generator = torch.Generator().manual_seed(derive_seed(seed, epoch, 0))
    state.model.train()
    total_loss, seen = 0.0, 0
    correct = torch.zeros((), dtype=torch.int64, device=device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(derive_seed(seed, epoch, 1))
        for step, idx in enumerate(batch_indices(len(y), batch_size, generator)):
            lr = learning_rate(config, epoch + step / n_batches, plan)
            for group in state.optimizer.param_groups:
                group["lr"] = lr
            idx = idx.to(device)
            xb, yb = x[idx], y[idx]
            if flip or shift:
                xb = augment(xb, flip, shift, generator)
            logits = state.model(xb)
            loss = _batch_loss(logits, yb, idx, loss_fn, distill)
            loss_value = loss.item()  # the one host sync per batch
            if not math.isfinite(loss_value):
                return Status.DIVERGED, loss_value, 0.0
            state.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            state.optimizer.step()
            total_loss += loss_value * len(yb)
            correct += (tower_mean(logits.detach()).argmax(1) == yb).sum()
            seen += len(yb)
            if deadline is not None and time.monotonic() > deadline:
                return Status.TIMED_OUT, total_loss / seen, 0.0
    return Status.OK, total_loss / max(seen, 1), int(correct) / max(seen, 1)


def _batch_loss(
    logits: torch.Tensor,
    y: torch.Tensor,
    idx: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    distill: Distillation | None,
) -> torch.Tensor:
    """The training loss of a batch; a network with towers (logits ``(batch, towers, classes)``,
    see :mod:`evoband.nets._towers`) gets the mean of its towers' own losses."""
    if logits.dim() == 3:  # every tower as a batch of its own, equally weighted
        k = logits.shape[1]
        logits, y, idx = logits.flatten(0, 1), y.repeat_interleave(k), idx.repeat_interleave(k)
    loss = loss_fn(logits, y)
    return distill.loss(logits, loss, idx) if distill is not None else loss


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Logits of ``model`` on ``x`` in evaluation mode, on the CPU."""
    model.eval()
    if len(x) == 0:
        return model(x[:1]).float().cpu()[:0]
    return torch.cat(
        [model(x[i : i + batch_size]).float().cpu() for i in range(0, len(x), batch_size)]
    )


def evaluate_model(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    config: Mapping[str, Any],
    family: NetworkFamily = SHIPPED,
) -> tuple[Metrics, torch.Tensor]:
    """Scores of ``model`` (of ``family``, built from ``config``) on ``(x, y)`` and its logits."""
    with cpu_threads(_threads_for(config, x, _n_outputs(model), family)):
        logits = predict(model, x)
    labels = y.cpu()
    loss = float(_loss_fn(config, logits.shape[1])(logits, labels))
    if not math.isfinite(loss):
        loss = float("nan")
    return compute_metrics(logits, labels, loss), logits
