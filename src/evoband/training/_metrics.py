"""The metrics, defined once: top-k accuracy, macro precision, confusion matrix.

Precision is macro-averaged over the classes that occur in the labels or the predictions of the
whole evaluation set (scikit-learn's definition, ``zero_division=0``); a CV value is the mean over
folds. The reference script averaged per batch; this is the standard definition.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Metrics:
    """Scores of one model on one evaluation set."""

    top1: float
    top3: float
    precision: float
    loss: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def top_k_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Fraction of samples whose label is among the ``k`` highest logits."""
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return float((top == labels[:, None]).any(dim=1).float().mean())


def confusion_matrix(predicted: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """``n_classes x n_classes`` counts; rows are true classes, columns predicted ones."""
    flat = labels.to(torch.int64) * n_classes + predicted.to(torch.int64)
    return torch.bincount(flat.cpu(), minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def macro_precision(predicted: torch.Tensor, labels: torch.Tensor, n_classes: int) -> float:
    """Precision averaged over the classes present in labels or predictions (zero_division=0)."""
    return macro_precision_np(predicted.cpu().numpy(), labels.cpu().numpy(), n_classes)


def macro_precision_np(predicted: np.ndarray, labels: np.ndarray, n_classes: int) -> float:
    """:func:`macro_precision` of numpy arrays (the one definition; fast for ensemble search)."""
    flat = labels.astype(np.int64) * n_classes + predicted.astype(np.int64)
    cm = np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    predicted_count = cm.sum(axis=0)
    present = (cm.sum(axis=1) > 0) | (predicted_count > 0)
    if not present.any():
        return 0.0
    per_class = np.diagonal(cm) / np.maximum(predicted_count, 1)
    return float(per_class[present].mean())


def compute_metrics(
    logits: torch.Tensor, labels: torch.Tensor, loss: float = float("nan")
) -> Metrics:
    """All scores of ``logits`` against ``labels``."""
    n_classes = logits.shape[1]
    predicted = logits.argmax(dim=1)
    return Metrics(
        top1=top_k_accuracy(logits, labels, 1),
        top3=top_k_accuracy(logits, labels, 3),
        precision=macro_precision(predicted, labels, n_classes),
        loss=loss,
    )
