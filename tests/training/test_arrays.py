"""In-memory data: arrays and tensors to a DataSource, with one-line errors for bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evoband import DataError, data_from_arrays


def images(n: int = 12, dtype: type = np.uint8) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(n, 1, 4, 4))
    return x.astype(dtype) if dtype is np.uint8 else (x / 255.0).astype(dtype)


def test_labels_of_any_sortable_type_become_sorted_classes() -> None:
    x = images(12)
    y = ["zebra", "ant", "mole"] * 4
    data = data_from_arrays(x, y, test=(x[:3], ["mole", "ant", "zebra"]))
    assert data.classes == ("ant", "mole", "zebra")
    assert data.train.labels.tolist() == [2, 0, 1] * 4
    assert data.test.labels.tolist() == [1, 0, 2]
    assert data.input_shape == (1, 4, 4)
    assert torch.equal(data.train.images, torch.from_numpy(x))


def test_float_images_are_stored_as_8_bit_pixels_and_the_same_content_has_one_location() -> None:
    x8 = images(12)
    xf = torch.from_numpy(x8.astype(np.float32) / 255.0)
    labels = np.array([3, 1, 2] * 4)
    a = data_from_arrays(xf, labels)
    b = data_from_arrays(x8, torch.from_numpy(labels))
    assert a.location == b.location and a.location.startswith("arrays:sha256:")
    assert torch.equal(a.train.images, b.train.images)
    assert (len(a.train), len(a.test)) == (9, 3)  # a stratified quarter held out
    assert sorted(a.test.labels.tolist()) == [0, 1, 2]
    changed = x8.copy()
    changed[0, 0, 0, 0] ^= 1
    assert data_from_arrays(changed, labels).location != a.location


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (images(12)[:, 0], [0, 1] * 6, r"shape \(12, 4, 4\), but images must be N x C x H x W"),
        (images(12), [0, 1] * 5, "y has 10 labels, but there are 12 images"),
        (images(12, np.float32) * 2.0, [0, 1] * 6, r"must lie in \[0, 1\]"),
        (np.full((12, 1, 4, 4), np.nan), [0, 1] * 6, "NaN"),
        (images(12).astype(np.int64) * 300, [0, 1] * 6, r"must lie in \[0, 255\]"),
        (images(12), [0] * 12, "at least 2"),
        (images(12), [0, "a"] * 6, "cannot be sorted"),
        ([[0]], [0], "numpy array or a torch tensor"),
        (images(12), [[0], [1]] * 6, "unhashable"),
        (images(12), [0] * 11 + [1], "Cannot split a stratified test set"),
    ],
)
def test_bad_arrays_are_refused_in_one_line(x: object, y: object, message: str) -> None:
    with pytest.raises(DataError, match=message) as info:
        data_from_arrays(x, y)
    assert "\n" not in str(info.value)


def test_a_test_split_must_match_the_training_split() -> None:
    x = images(12)
    with pytest.raises(DataError, match="same image shape"):
        data_from_arrays(x, [0, 1] * 6, test=(np.zeros((2, 3, 4, 4), np.uint8), [0, 1]))
    with pytest.raises(DataError, match=r"labels that y has not: \['7'\]"):
        data_from_arrays(x, [0, 1] * 6, test=(x[:2], [0, 7]))
