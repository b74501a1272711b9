"""In-memory data: a :class:`~evoband.training._data.DataSource` built from image arrays and labels.

Images are ``N x C x H x W`` numpy arrays or torch tensors, ``uint8`` (0-255) or floating point
(0-1; stored as 8-bit pixels like decoded image files). Labels may be of any hashable, sortable
type; the classes are their distinct values in sorted order (as folder names are sorted), and the
class names are their ``str``. The data set's ``location`` is a content hash of the arrays, so a
run on in-memory data can be resumed with the same arrays and refuses different ones.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from ..core._errors import DataError
from ..core._validate import require_number
from ._data import DataSource, ImageSet, check_class_count

ARRAYS = "arrays"
"""The name of a data set built from arrays; its location is ``arrays:sha256:<hex>``."""


def data_from_arrays(
    x: Any,
    y: Any,
    *,
    test: tuple[Any, Any] | None = None,
    test_fraction: float = 0.25,
    seed: int = 0,
) -> DataSource:
    """A data set from training images and labels, and optionally a test split.

    Args:
        x: images ``N x C x H x W`` (numpy array or torch tensor), uint8 or float in [0, 1].
        y: ``N`` labels of any hashable, sortable type (a sequence, array or tensor).
        test: ``(x_test, y_test)``; None splits ``test_fraction`` of ``(x, y)`` off instead,
            stratified and fixed by ``seed`` (as the digits set is).
        test_fraction: the share of ``(x, y)`` held out as the test split when ``test`` is None.
        seed: fixes that split.

    Raises:
        DataError: a shape, a pixel range or a label does not fit, in one line.
    """
    images = _images(x, "x")
    labels = _labels(y, len(images), "y")
    try:
        classes: list[Any] = sorted(set(labels))  # type: ignore[type-var]
    except TypeError as exc:
        raise DataError(f"The labels of y cannot be sorted into classes ({exc}).") from None
    names = tuple(str(c) for c in classes)
    if len(set(names)) != len(names):
        raise DataError(f"Distinct labels have the same name as text: {list(names)}.")
    check_class_count(len(classes), "y")
    index = {c: i for i, c in enumerate(classes)}
    codes = torch.tensor([index[label] for label in labels], dtype=torch.int64)
    if test is None:
        train, test_set = _split(images, codes, test_fraction, seed)
    else:
        x_test, y_test = test
        test_images = _images(x_test, "x_test")
        if test_images.shape[1:] != images.shape[1:]:
            raise DataError(
                f"x_test images are {tuple(test_images.shape[1:])} (C x H x W), but x images are "
                f"{tuple(images.shape[1:])}; both splits need the same image shape."
            )
        test_labels = _labels(y_test, len(test_images), "y_test")
        unknown = sorted({str(label) for label in test_labels if label not in index})
        if unknown:
            raise DataError(
                f"y_test has labels that y has not: {unknown[:5]}; every test class must be trained."
            )
        train = ImageSet(images, codes)
        test_set = ImageSet(
            test_images, torch.tensor([index[label] for label in test_labels], dtype=torch.int64)
        )
    return DataSource(
        ARRAYS, f"{ARRAYS}:sha256:{_digest(train, test_set, names)}", names, train, test_set
    )


def _images(x: Any, name: str) -> torch.Tensor:
    """``x`` as a contiguous uint8 tensor ``N x C x H x W`` on the CPU."""
    if not isinstance(x, (np.ndarray, torch.Tensor)):
        raise DataError(
            f"{name} is a {type(x).__name__}; pass images as a numpy array or a torch tensor."
        )
    t = torch.as_tensor(x).detach().cpu()
    if t.ndim != 4 or min(t.shape, default=0) == 0:
        raise DataError(
            f"{name} has shape {tuple(t.shape)}, but images must be N x C x H x W with no empty "
            "dimension (e.g. (100, 3, 16, 16); add a channel axis to grayscale images)."
        )
    if t.dtype == torch.uint8:
        return t.contiguous()
    if t.dtype == torch.bool or t.is_complex():
        raise DataError(f"{name} has dtype {t.dtype}; pass uint8 (0-255) or float (0-1) images.")
    if t.is_floating_point():
        if not bool(torch.isfinite(t).all()):
            raise DataError(f"{name} holds NaN or infinite values.")
        low, high = float(t.min()), float(t.max())
        if low < 0.0 or high > 1.0:
            raise DataError(
                f"{name} is floating point with values in [{low:g}, {high:g}], but float images "
                "must lie in [0, 1]; pass uint8 for 0-255 pixels."
            )
        return (t.to(torch.float64) * 255.0).round().to(torch.uint8).contiguous()
    low, high = int(t.min()), int(t.max())
    if low < 0 or high > 255:
        raise DataError(
            f"{name} is {t.dtype} with values in [{low}, {high}], but integer images must lie in [0, 255]."
        )
    return t.to(torch.uint8).contiguous()


def _labels(y: Any, n: int, name: str) -> list[Hashable]:
    """``y`` as a list of ``n`` hashable Python values."""
    values = y.tolist() if isinstance(y, (np.ndarray, torch.Tensor)) else y
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise DataError(f"{name} is a {type(y).__name__}; pass one label per image as a sequence.")
    labels = list(values)
    if len(labels) != n:
        raise DataError(f"{name} has {len(labels)} labels, but there are {n} images.")
    unhashable = [v for v in labels if not isinstance(v, Hashable)]
    if unhashable:
        raise DataError(
            f"{name} holds unhashable labels such as {unhashable[0]!r}; labels must be one value per image."
        )
    return labels


def _split(
    images: torch.Tensor, codes: torch.Tensor, test_fraction: float, seed: int
) -> tuple[ImageSet, ImageSet]:
    require_number("test_fraction", test_fraction, low=0, high=1, low_open=True, high_open=True)
    try:
        idx_train, idx_test = train_test_split(
            np.arange(len(codes)),
            test_size=test_fraction,
            stratify=codes.numpy(),
            random_state=seed,
        )
    except ValueError as exc:
        raise DataError(
            f"Cannot split a stratified test set off (x, y) ({exc}); pass "
            "((x_train, y_train), (x_test, y_test)) instead."
        ) from None
    tr, te = torch.from_numpy(np.sort(idx_train)), torch.from_numpy(np.sort(idx_test))
    return ImageSet(images[tr], codes[tr]), ImageSet(images[te], codes[te])


def _digest(train: ImageSet, test: ImageSet, classes: Sequence[str]) -> str:
    """SHA-256 of the pixels, shapes, labels and class names of both splits."""
    digest = hashlib.sha256(json.dumps(list(classes)).encode())
    for split in (train, test):
        digest.update(str(tuple(split.images.shape)).encode())
        digest.update(split.images.numpy().tobytes())
        digest.update(split.labels.numpy().tobytes())
    return digest.hexdigest()
