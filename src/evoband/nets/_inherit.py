"""Weight inheritance parent -> child (Lamarckian): a child starts from its parent's trained
weights, reshaped to the child's network, instead of from random ones.

The genotype is a flat config dict and the network family is :mod:`evoband.nets._cnn`'s, whose modules
have stable names (``conv.<i>.conv``, ``conv.<i>.extra.<j>.0``, ``fc.<i>.linear``, ``head``).
Every weighted layer of the child is filled in network order:

- **Same layer in the parent** (same module name): its output channels are the parent's (a wider
  layer keeps them all and adds fresh filters; a narrower one keeps the channels whose filters
  have the largest L1 norm, as in Li et al. 2017, "Pruning filters for efficient ConvNets"). Its
  input weights follow the channels its input actually carries: a kept channel's weights are
  copied, a new channel's are zero, so new channels change nothing until trained. The same
  channel indices reach every consumer: the BatchNorm, the next conv, and through flatten
  (``global_avg_pooling`` False) the blocks of ``h * w`` inputs of the first FC layer. New
  BatchNorm channels are weight 1, bias 0, running mean 0, running var 1. A different kernel
  size is centred: a larger kernel pads the parent's with zeros, a smaller one crops it.
- **An added convolution in a stage** (``convs_per_stage`` grew) starts as a Dirac kernel with an
  identity BatchNorm; **an added FC layer** (``n_fc_layers`` grew) as an identity matrix on the
  previous layer's units (when narrower than them, on the units with the largest filter norms;
  the extra units of a wider one are fresh, with zero outgoing weights).
- **A new conv stage** (``n_conv_layers`` grew) is freshly initialised: with its pooling it can
  not be an identity.
- **A removed layer** (fewer stages, convolutions per stage or FC layers): its consumer now reads
  another layer's output. Such a join copies what matches by position (the leading output rows
  and input columns the two shapes share) and keeps the fresh initialisation for the rest.

**A recombined child** (:func:`inherit_recombined`) takes each weighted layer from the parent
that gave it: the first parent whose layer of the same name has the child's width and kernel
size (the first parent when several or none do), mapped onto the child as above from that parent
alone. Layers of different parents meet with arbitrary channel correspondences, so a crossover
child never computes either parent's function.

A child whose network has exactly the parent's tensors (it differs only in training
hyperparameters such as the learning rate, optimizer, weight decay, augmentation, batch size or
dropout) gets the full parent state, as in population-based training.

**When the child computes the parent's function** (in eval mode, up to float rounding; training
mode differs through BatchNorm batch statistics and dropout):

- differences in training hyperparameters only; wider conv or FC layers; a larger kernel: always.
- an added convolution in a stage: with ReLU (the only activation with ``relu(y) = y`` on a known
  range). Without BatchNorm its input is a ReLU output, non-negative, so the Dirac kernel and the
  ReLU pass it unchanged. With BatchNorm its input is the previous BatchNorm's eval-mode affine
  map of a non-negative ReLU output, so each channel is bounded below (BN weight >= 0) or above
  (weight < 0): the added conv adds (or, with a kernel of -1, subtracts from) a bias that moves
  the channel into the non-negative range, and its own BatchNorm (running mean = that bias,
  running var = 1 - eps, weight +-1) removes it again. With leaky ReLU the Dirac layer is an
  identity only where its input is non-negative, which nothing guarantees; GELU and SiLU are
  never the identity.
- an added FC layer: with ReLU, when it is at least as wide as its input. Its input units are
  bounded the same way (ReLU outputs of an FC layer are non-negative; pooled BatchNorm features
  are bounded per channel); the shift moved into the non-negative range is subtracted in the
  next layer's bias.
- not preserved: narrower layers, a smaller kernel, removed layers, new stages, a changed
  activation, ``use_BN`` or ``global_avg_pooling``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ._cnn import build_model
from ._layer_map import (
    BN_EPS,
    IDENTITY_ACTIVATIONS,
    LayerSpec,
    Signal,
    Space,
    _bounds,
    _filter_norms,
    _fit_kernel,
    _parent_inputs,
    _pooled,
    _shift_into_relu,
    _top,
    layer_specs,
)
from ._towers import join_towers, n_towers, split_towers


class _Builder:
    """Fills a child's state dict layer by layer from the parent's."""

    def __init__(
        self,
        parent_state: Mapping[str, torch.Tensor],
        parent_config: Mapping[str, Any],
        child_state: Mapping[str, torch.Tensor],
        input_shape: tuple[int, int, int],
        n_classes: int,
    ) -> None:
        self.parent = parent_state
        self.out = {k: v.detach().clone() for k, v in child_state.items()}
        specs = layer_specs(parent_config, input_shape, n_classes)
        self.parent_specs = {spec.name: spec for spec in specs}
        self.parent_inputs = _parent_inputs(specs, input_shape[0])

    def layer(self, spec: LayerSpec, x: Space) -> Space:
        """Fill ``spec``'s tensors given its input units ``x``; return its output units."""
        if spec.name in self.parent_specs:
            return self._inherited(spec, x)
        if spec.kind == "conv" and spec.in_stage > 0 and len(x.signals) == spec.width:
            return self._identity_conv(spec, x)
        if spec.kind == "linear" and spec.activation is not None:
            return self._identity_linear(spec, x)
        signals: list[Signal | None] = [(f"{spec.name}#new", c, "") for c in range(spec.width)]
        return Space.plain(signals, *_bounds(spec, self.out))

    # -- a layer the parent has ----------------------------------------------------------------

    def _columns(self, spec: LayerSpec, x: Space, n_parent: int) -> tuple[list[int], ...]:
        """(child columns to copy, their parent columns, child columns to zero)."""
        position = {s: j for j, s in enumerate(self.parent_inputs[spec.name])}
        found = [position.get(s) if s is not None else None for s in x.signals]
        copy_child, copy_parent, zero = [], [], []
        if any(p is not None for p in found):  # the same input as in the parent
            for j, (s, p) in enumerate(zip(x.signals, found, strict=True)):
                if p is not None:
                    copy_child.append(j)
                    copy_parent.append(p)
                elif s is None:
                    zero.append(j)
        else:  # a join after a removed layer: copy by position
            copy_child = copy_parent = list(range(min(len(x.signals), n_parent)))
        return copy_child, copy_parent, zero

    def _inherited(self, spec: LayerSpec, x: Space) -> Space:
        pw = self.parent[f"{spec.name}.weight"].to(self.out[f"{spec.name}.weight"].device)
        weight = self.out[f"{spec.name}.weight"]
        if spec.kind == "conv":
            pw = _fit_kernel(pw, weight.shape[-1])
        n_parent = pw.shape[0]
        rows = (
            list(range(n_parent)) if spec.width >= n_parent else _top(_filter_norms(pw), spec.width)
        )
        kept = torch.arange(len(rows))
        prows = torch.tensor(rows, dtype=torch.long)
        copy_child, copy_parent, zero = self._columns(spec, x, pw.shape[1])
        cc, cp = (
            torch.tensor(copy_child, dtype=torch.long),
            torch.tensor(copy_parent, dtype=torch.long),
        )
        weight[kept[:, None], cc[None, :]] = pw[prows[:, None], cp[None, :]].to(weight.dtype)
        if zero:
            weight[kept[:, None], torch.tensor(zero)[None, :]] = 0.0
        bias = self.out[f"{spec.name}.bias"]
        bias[kept] = self.parent[f"{spec.name}.bias"].to(bias)[prows]
        self._copy_bn(spec, rows)
        if x.encoded:
            self._decode(spec, x)
        signals: list[Signal | None] = [(spec.name, r, "") for r in rows]
        signals += [None] * (spec.width - len(rows))
        return Space.plain(signals, *_bounds(spec, self.out))

    def _copy_bn(self, spec: LayerSpec, rows: list[int]) -> None:
        parent_bn = self.parent_specs[spec.name].bn
        if spec.bn is None or parent_bn is None:
            return  # a BN the parent lacks keeps its fresh (identity) initialisation
        kept, prows = torch.arange(len(rows)), torch.tensor(rows, dtype=torch.long)
        new = {"weight": 1.0, "bias": 0.0, "running_mean": 0.0, "running_var": 1.0}
        for key, value in new.items():
            tensor = self.out[f"{spec.bn}.{key}"]
            tensor.fill_(value)
            tensor[kept] = self.parent[f"{parent_bn}.{key}"].to(tensor)[prows]
        tracked = f"{spec.bn}.num_batches_tracked"
        self.out[tracked] = self.parent[f"{parent_bn}.num_batches_tracked"].clone()

    def _decode(self, spec: LayerSpec, x: Space) -> None:
        """Make a linear layer read the plain values of inputs encoded as ``scale * x + shift``."""
        if spec.kind != "linear":
            raise AssertionError("conv inputs are never shifted (zero padding would not be)")
        weight, bias = self.out[f"{spec.name}.weight"], self.out[f"{spec.name}.bias"]
        weight.mul_(x.scale.to(weight)[None, :])
        bias.sub_(weight @ x.shift.to(weight))

    # -- a layer the parent lacks --------------------------------------------------------------

    def _identity_conv(self, spec: LayerSpec, x: Space) -> Space:
        """A Dirac convolution (with its bias shift undone by its BatchNorm); see the module
        docstring for when it is an identity."""
        weight, bias = self.out[f"{spec.name}.weight"], self.out[f"{spec.name}.bias"]
        scale, shift = torch.ones(spec.width), torch.zeros(spec.width)
        if spec.bn is not None and spec.activation in IDENTITY_ACTIVATIONS:
            scale, shift = _shift_into_relu(x.lower, x.upper)
        centre = weight.shape[-1] // 2
        weight.zero_()
        channels = torch.arange(spec.width)
        weight[channels, channels, centre, centre] = scale.to(weight)
        bias.copy_(shift)
        if spec.bn is not None:
            self.out[f"{spec.bn}.weight"].copy_(scale)
            self.out[f"{spec.bn}.bias"].zero_()
            self.out[f"{spec.bn}.running_mean"].copy_(shift)
            self.out[f"{spec.bn}.running_var"].fill_(1.0 - BN_EPS)
        return Space.plain(list(x.signals), *_bounds(spec, self.out))

    def _identity_linear(self, spec: LayerSpec, x: Space) -> Space:
        """An identity matrix on the input units (the ones with the largest filter norms when
        narrower), shifted into ReLU's identity range; extra units stay fresh."""
        n_in = len(x.signals)
        keep = list(range(n_in)) if spec.width >= n_in else _top(self._unit_norms(x), spec.width)
        weight, bias = self.out[f"{spec.name}.weight"], self.out[f"{spec.name}.bias"]
        lower, upper = x.lower[keep], x.upper[keep]
        scale, shift = torch.ones(len(keep)), torch.zeros(len(keep))
        if spec.activation in IDENTITY_ACTIVATIONS:
            scale, shift = _shift_into_relu(lower, upper)
        rows = torch.arange(len(keep))
        weight[rows] = 0.0
        weight[rows, torch.tensor(keep, dtype=torch.long)] = scale.to(weight)
        bias[rows] = shift.to(bias)
        if x.encoded:
            self._decode(spec, x)
        extra = spec.width - len(keep)
        signals = [x.signals[j] for j in keep] + [None] * extra

        def padded(t: torch.Tensor, fill: float) -> torch.Tensor:
            return torch.cat([t, torch.full((extra,), fill)])

        return Space(
            signals,
            padded(scale, 1.0),
            padded(shift, 0.0),
            padded(lower, -torch.inf),
            padded(upper, torch.inf),
        )

    def _unit_norms(self, x: Space) -> torch.Tensor:
        """The L1 norm of the parent filter that produced each unit (0 for new units)."""
        norms = torch.zeros(len(x.signals))
        cache: dict[str, torch.Tensor] = {}
        for j, s in enumerate(x.signals):
            if s is None or f"{s[0]}.weight" not in self.parent:
                continue
            if s[0] not in cache:
                cache[s[0]] = _filter_norms(self.parent[f"{s[0]}.weight"])
            norms[j] = cache[s[0]][s[1]]
        return norms


def _same_tensors(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)


def inherit_state(
    parent_state: Mapping[str, torch.Tensor],
    parent_config: Mapping[str, Any],
    child_state: Mapping[str, torch.Tensor],
    child_config: Mapping[str, Any],
    input_shape: tuple[int, int, int],
) -> dict[str, torch.Tensor]:
    """The child's state dict initialised from the parent's trained weights.

    Tower ``k`` of the child (:mod:`evoband.nets._towers`) inherits from tower ``k`` of the parent; a
    tower the parent does not have keeps its fresh initialisation (a copy would train in step
    with its source and add nothing to the ensemble).

    Args:
        parent_state: the parent model's ``state_dict()``.
        parent_config: the parent's genotype.
        child_state: the freshly initialised child model's ``state_dict()``; kept where nothing
            is inherited (new filters, new layers).
        child_config: the child's genotype.
        input_shape: ``C x H x W`` of the data both were built for.

    Returns:
        A state dict that ``build_model(child_config, ...)`` loads strictly (see the module
        docstring for what is copied and when the parent's function is preserved).
    """
    return _tower_by_tower(
        [(parent_state, parent_config)],
        child_state,
        child_config,
        lambda parents, child: _inherit_network(*parents[0], child, child_config, input_shape),
    )


Parents = Sequence[tuple[Mapping[str, torch.Tensor], Mapping[str, Any]]]


def _tower_by_tower(
    parents: Parents,
    child_state: Mapping[str, torch.Tensor],
    child_config: Mapping[str, Any],
    inherit_one: Callable[[Parents, dict[str, torch.Tensor]], dict[str, torch.Tensor]],
) -> dict[str, torch.Tensor]:
    """``inherit_one(parents' tower k, child's tower k)`` for every tower k of the child, with
    the parents that have a tower k; a tower no parent has keeps its fresh weights."""
    by_tower = [(split_towers(state, n_towers(config)), config) for state, config in parents]
    children = split_towers(child_state, n_towers(child_config))
    return join_towers(
        [
            inherit_one(tower_parents, child)
            if (tower_parents := [(t[k], c) for t, c in by_tower if k < len(t)])
            else child
            for k, child in enumerate(children)
        ]
    )


def _inherit_network(
    parent_state: Mapping[str, torch.Tensor],
    parent_config: Mapping[str, Any],
    child_state: Mapping[str, torch.Tensor],
    child_config: Mapping[str, Any],
    input_shape: tuple[int, int, int],
) -> dict[str, torch.Tensor]:
    """:func:`inherit_state` between two one-tower networks."""
    if _same_tensors(parent_state, child_state):
        return {k: v.detach().clone().to(child_state[k].device) for k, v in parent_state.items()}
    n_classes = int(child_state["head.weight"].shape[0])
    builder = _Builder(parent_state, parent_config, child_state, input_shape, n_classes)
    signals: list[Signal | None] = [("input", c, "") for c in range(input_shape[0])]
    x = Space.plain(signals)
    with torch.no_grad():
        for spec in layer_specs(child_config, input_shape, n_classes):
            x = builder.layer(spec, _pooled(x, spec.pooling))
    return builder.out


def inherit_recombined(
    parents: Sequence[tuple[Mapping[str, torch.Tensor], Mapping[str, Any]]],
    child_state: Mapping[str, torch.Tensor],
    child_config: Mapping[str, Any],
    input_shape: tuple[int, int, int],
) -> dict[str, torch.Tensor]:
    """A crossover child's state dict: each weighted layer (with its BatchNorm) from the parent
    that gave it (see the module docstring).

    Args:
        parents: ``(state_dict, config)`` of each parent, the first parent first.
        child_state, child_config, input_shape: as for :func:`inherit_state`.
    """
    return _tower_by_tower(
        parents,
        child_state,
        child_config,
        lambda tower_parents, child: _recombine_network(
            tower_parents, child, child_config, input_shape
        ),
    )


def _recombine_network(
    parents: Sequence[tuple[Mapping[str, torch.Tensor], Mapping[str, Any]]],
    child_state: Mapping[str, torch.Tensor],
    child_config: Mapping[str, Any],
    input_shape: tuple[int, int, int],
) -> dict[str, torch.Tensor]:
    """:func:`inherit_recombined` for one tower of the child (each parent's same tower)."""
    mapped = [
        _inherit_network(state, config, child_state, child_config, input_shape)
        for state, config in parents
    ]
    out = dict(mapped[0])
    n_classes = int(child_state["head.weight"].shape[0])
    for spec in layer_specs(child_config, input_shape, n_classes):
        donor = _donor(spec.name, [state for state, _ in parents], child_state)
        if donor == 0:
            continue
        modules = [spec.name] if spec.bn is None else [spec.name, spec.bn]
        for key in child_state:
            if any(key.startswith(f"{module}.") for module in modules):
                out[key] = mapped[donor][key]
    return out


def _donor(
    name: str,
    parent_states: Sequence[Mapping[str, torch.Tensor]],
    child_state: Mapping[str, torch.Tensor],
) -> int:
    """The first parent whose layer ``name`` has the child's output width and kernel size."""
    shape = child_state[f"{name}.weight"].shape
    for i, state in enumerate(parent_states):
        weight = state.get(f"{name}.weight")
        if weight is not None and weight.shape[0] == shape[0] and weight.shape[2:] == shape[2:]:
            return i
    return 0


def inherit(
    parent_state: Mapping[str, torch.Tensor],
    parent_config: Mapping[str, Any],
    child_config: Mapping[str, Any],
    input_shape: tuple[int, int, int],
    n_classes: int,
    *,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """:func:`inherit_state` on a child freshly initialised with ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        child = build_model(child_config, input_shape, n_classes)
    return inherit_state(parent_state, parent_config, child.state_dict(), child_config, input_shape)
