"""Weight inheritance for any network: tensors matched by name, the overlap of differing shapes.

The networks of a composed space (:mod:`evoband.nets._composed`) name their modules by the keys of
their items, so a parent and its child share the names of the layers they share. For each tensor
of the child, in this order:

- the first parent holding a tensor of that name and shape gives it whole;
- else the first parent holding one of that name and rank gives the overlap: leading output
  channels and inputs, the centre of a kernel. The rest of the child's tensor keeps its fresh
  initialisation, except in weight tensors (rank >= 2) whose kept output channels get zero
  weights from new inputs and on a grown kernel's border, so that new inputs change nothing
  until trained;
- else the tensor keeps its fresh initialisation (a new layer).

So a wider layer (its new channels read by zero weights), an unchanged copy and changes of
training settings keep the parent's function in eval mode in a chain of layers. A narrower layer keeps its leading channels (not the largest ones, as
the shipped family's :mod:`evoband.nets._inherit` does), and new layers start fresh: those change it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch


def inherit_by_name(
    parents: Sequence[Mapping[str, torch.Tensor]], child_state: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The child's state dict from its parents' (the first parent first), by tensor name.

    Args:
        parents: the parents' ``state_dict()``.
        child_state: the freshly initialised child's ``state_dict()``.
    """
    out: dict[str, torch.Tensor] = {}
    for key, fresh in child_state.items():
        held = [p[key] for p in parents if key in p]
        same = next((t for t in held if t.shape == fresh.shape), None)
        if same is not None:
            out[key] = same.detach().clone().to(fresh.device)
            continue
        ranked = next((t for t in held if t.dim() == fresh.dim() and t.dim() > 0), None)
        out[key] = fresh.clone() if ranked is None else _overlap(ranked.to(fresh.device), fresh)
    return out


def _overlap(source: torch.Tensor, fresh: torch.Tensor) -> torch.Tensor:
    """``fresh`` with the overlap of ``source`` copied in (leading channels, centred kernels)."""
    out = fresh.detach().clone()
    src: list[slice] = []
    dst: list[slice] = []
    for d, (a, b) in enumerate(zip(source.shape, fresh.shape, strict=True)):
        if d < 2 or a == b:
            n = min(a, b)
            src.append(slice(0, n))
            dst.append(slice(0, n))
        elif a > b:  # a smaller kernel: the parent's centre
            src.append(slice((a - b) // 2, (a - b) // 2 + b))
            dst.append(slice(0, b))
        else:  # a larger kernel: the parent's kernel in the centre
            src.append(slice(0, a))
            dst.append(slice((b - a) // 2, (b - a) // 2 + a))
    if fresh.dim() >= 2:
        out[: min(source.shape[0], fresh.shape[0])] = 0  # kept outputs ignore what is new
    out[tuple(dst)] = source[tuple(src)]
    return out
