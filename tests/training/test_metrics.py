"""Tests of evoband.training._metrics against hand-made cases and scikit-learn's definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sklearn.metrics
import torch

from evoband.training._metrics import (
    Metrics,
    compute_metrics,
    confusion_matrix,
    macro_precision,
    top_k_accuracy,
)

# Four samples, four classes; the rank of the true label is 1, 2, 3 and 4 in turn.
LOGITS = torch.tensor(
    [
        [5.0, 1.0, 0.0, -1.0],  # label 0: rank 1
        [3.0, 2.0, 4.0, 0.0],  # label 1: rank 3
        [0.0, 1.0, 2.0, 3.0],  # label 2: rank 2
        [4.0, 3.0, 2.0, 1.0],  # label 3: rank 4
    ]
)
LABELS = torch.tensor([0, 1, 2, 3])


@pytest.mark.parametrize(("k", "expected"), [(1, 0.25), (2, 0.5), (3, 0.75), (4, 1.0), (10, 1.0)])
def test_top_k_accuracy_hand_made(k: int, expected: float) -> None:
    assert top_k_accuracy(LOGITS, LABELS, k) == pytest.approx(expected)


def test_top_k_accuracy_with_fewer_classes_than_k() -> None:
    logits = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert top_k_accuracy(logits, torch.tensor([0, 0]), 3) == 1.0
    assert top_k_accuracy(logits, torch.tensor([0, 0]), 1) == 0.5


def test_top_k_accuracy_equals_sklearn(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(200, 7, generator=gen)
    labels = torch.randint(0, 7, (200,), generator=gen)
    for k in (1, 3, 5):
        expected = sklearn.metrics.top_k_accuracy_score(
            labels.numpy(), logits.numpy(), k=k, labels=range(7)
        )
        assert top_k_accuracy(logits, labels, k) == pytest.approx(expected)


def test_macro_precision_hand_made() -> None:
    labels = torch.tensor([0, 2, 1, 2])
    predicted = torch.tensor([0, 0, 1, 1])
    # Class 0: predicted twice, right once -> 1/2; class 1: predicted twice, right once -> 1/2;
    # class 2: in the labels but never predicted -> 0 (zero_division=0); class 3 occurs nowhere
    # and does not count.
    assert macro_precision(predicted, labels, 4) == pytest.approx((0.5 + 0.5 + 0.0) / 3)
    assert macro_precision(labels, labels, 4) == 1.0


def _random_predictions(
    seed: int, n: int, n_classes: int, never: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    allowed = np.array([c for c in range(n_classes) if c not in never])
    predicted = rng.choice(allowed, n)
    return torch.from_numpy(predicted), torch.from_numpy(labels)


@pytest.mark.parametrize("extra_seed", [0, 1, 2, 3])
@pytest.mark.parametrize(
    ("n", "n_classes", "never"),
    [(50, 5, ()), (40, 17, (0, 3, 16)), (7, 17, ()), (300, 3, (1,)), (1, 4, ())],
)
def test_macro_precision_equals_sklearn(
    seed: int, extra_seed: int, n: int, n_classes: int, never: tuple[int, ...]
) -> None:
    predicted, labels = _random_predictions(seed * 100 + extra_seed, n, n_classes, never)
    expected = sklearn.metrics.precision_score(
        labels.numpy(), predicted.numpy(), average="macro", zero_division=0
    )
    assert macro_precision(predicted, labels, n_classes) == pytest.approx(expected, abs=1e-12)


def test_macro_precision_counts_predicted_only_classes() -> None:
    # Class 2 never occurs in the labels but is predicted: it counts with precision 0.
    labels = torch.tensor([0, 0, 1, 1])
    predicted = torch.tensor([0, 2, 1, 1])
    expected = sklearn.metrics.precision_score(labels, predicted, average="macro", zero_division=0)
    assert macro_precision(predicted, labels, 3) == pytest.approx(expected)
    assert expected == pytest.approx((1.0 + 1.0 + 0.0) / 3)


@pytest.mark.parametrize(("n", "n_classes", "never"), [(60, 4, ()), (25, 10, (2, 5)), (3, 6, ())])
def test_confusion_matrix_equals_sklearn(
    seed: int, n: int, n_classes: int, never: tuple[int, ...]
) -> None:
    predicted, labels = _random_predictions(seed, n, n_classes, never)
    got = confusion_matrix(predicted, labels, n_classes)
    expected = sklearn.metrics.confusion_matrix(
        labels.numpy(), predicted.numpy(), labels=range(n_classes)
    )
    assert got.shape == (n_classes, n_classes)
    np.testing.assert_array_equal(got.numpy(), expected)
    assert int(got.sum()) == n


def test_confusion_matrix_rows_are_true_classes() -> None:
    cm = confusion_matrix(torch.tensor([1]), torch.tensor([0]), 2)
    assert cm.tolist() == [[0, 1], [0, 0]]


def test_compute_metrics() -> None:
    metrics = compute_metrics(LOGITS, LABELS, loss=0.5)
    assert isinstance(metrics, Metrics)
    assert metrics.top1 == pytest.approx(0.25)
    assert metrics.top3 == pytest.approx(0.75)
    predicted = LOGITS.argmax(1)
    expected = sklearn.metrics.precision_score(LABELS, predicted, average="macro", zero_division=0)
    assert metrics.precision == pytest.approx(expected)
    assert metrics.to_dict() == {
        "top1": metrics.top1,
        "top3": metrics.top3,
        "precision": metrics.precision,
        "loss": 0.5,
    }
    assert math.isnan(compute_metrics(LOGITS, LABELS).loss)
