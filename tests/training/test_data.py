"""Tests of evoband.training._data: image folders, the digits set, folds, batches and augmentation."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from evoband.core._errors import DataError
from evoband.training import _data as data
from evoband.training._data import (
    DATA_ENV,
    augment,
    batch_indices,
    candidate_data_dirs,
    find_data_dir,
    load_data,
    stratified_folds,
)


def _write_rgb(path: Path, height: int = 8, width: int = 8, value: int = 100) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), value, dtype=np.uint8)).save(path)


# --- image folders ------------------------------------------------------------------------------


def test_load_data_tiny_folder(tiny_image_root: Path) -> None:
    source = load_data(tiny_image_root)

    assert source.classes == ("a", "b", "c")
    assert source.n_classes == 3
    assert source.input_shape == (3, 8, 8)
    assert source.train.images.shape == (36, 3, 8, 8)
    assert source.test.images.shape == (12, 3, 8, 8)
    assert source.train.images.dtype == torch.uint8
    assert source.test.images.dtype == torch.uint8
    assert source.train.labels.dtype == torch.int64
    assert torch.bincount(source.train.labels).tolist() == [12, 12, 12]
    assert torch.bincount(source.test.labels).tolist() == [4, 4, 4]
    assert source.location == str(tiny_image_root)
    assert source.describe() == {
        "name": "tiny",
        "location": str(tiny_image_root),
        "n_train": 36,
        "n_test": 12,
        "n_classes": 3,
        "input_shape": [3, 8, 8],
    }


def test_load_data_keeps_pixel_values(tiny_image_root: Path) -> None:
    from PIL import Image

    source = load_data(tiny_image_root)
    # Class "b" is green and sorted second, so its first image is index 12 of the train split.
    expected = np.asarray(Image.open(tiny_image_root / "train" / "b" / "000.png").convert("RGB"))
    got = source.train.images[12].permute(1, 2, 0).numpy()
    assert source.train.labels[12] == 1
    np.testing.assert_array_equal(got, expected)
    # The class colours survive decoding: each class is brightest in its own channel.
    for label in range(3):
        mean = source.train.images[source.train.labels == label].float().mean(dim=(0, 2, 3))
        assert int(mean.argmax()) == label


def test_labels_follow_string_sorted_folder_names(tmp_path: Path) -> None:
    # Different counts per class identify the folders behind the labels.
    counts = {"2": 4, "10": 3, "1": 2}
    for split in ("train", "test"):
        for name, count in counts.items():
            for i in range(count):
                _write_rgb(tmp_path / split / name / f"{i}.png")

    source = load_data(tmp_path)

    assert source.classes == ("1", "10", "2")  # string order, as torchvision's ImageFolder
    assert torch.bincount(source.train.labels).tolist() == [2, 3, 4]
    assert torch.bincount(source.test.labels).tolist() == [2, 3, 4]


def test_grayscale_folder_keeps_one_channel(image_folder_factory) -> None:
    root = image_folder_factory("gray", grayscale=True)

    source = load_data(root)

    assert source.input_shape == (1, 8, 8)
    assert source.train.images.shape == (36, 1, 8, 8)
    assert source.test.images.shape == (12, 1, 8, 8)


def test_hidden_and_non_image_files_are_skipped_with_one_warning(
    tiny_image_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    train = tiny_image_root / "train"
    (train / "a" / ".DS_Store").write_bytes(b"\x00\x01junk")
    (train / "b" / "notes.txt").write_text("not an image")
    _write_rgb(train / "c" / ".hidden.png")
    (train / ".cache").mkdir()  # a hidden folder is not a class

    with caplog.at_level(logging.WARNING, logger="evoband.training._data"):
        source = load_data(tiny_image_root)

    assert source.classes == ("a", "b", "c")
    assert len(source.train) == 36
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # the tiny set's 3 classes are warned about too (check_class_count); the skipped files once
    assert len(warnings) == 2 and "only 3 classes" in warnings[0]
    assert "Skipped 3" in warnings[1]
    assert str(train) in warnings[1]


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_unreadable_image_is_a_data_error_naming_the_file(
    tiny_image_root: Path, damage: str
) -> None:
    bad = tiny_image_root / "train" / "b" / "005.png"
    if damage == "garbage":
        bad.write_bytes(b"this is not a png at all")
    else:
        bad.write_bytes(bad.read_bytes()[:40])

    with pytest.raises(DataError, match="005.png") as info:
        load_data(tiny_image_root)
    assert str(bad) in str(info.value)


def test_empty_class_folder_is_a_data_error(tiny_image_root: Path) -> None:
    empty = tiny_image_root / "train" / "d"
    empty.mkdir()

    with pytest.raises(DataError, match="holds no images") as info:
        load_data(tiny_image_root)
    assert str(empty) in str(info.value)


def test_class_missing_in_test_split_is_a_data_error(tiny_image_root: Path) -> None:
    for f in (tiny_image_root / "test" / "c").iterdir():
        f.unlink()
    (tiny_image_root / "test" / "c").rmdir()

    with pytest.raises(DataError, match="missing"):
        load_data(tiny_image_root)


def test_train_without_class_folders_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()

    with pytest.raises(DataError, match="No class folders"):
        load_data(tmp_path)


@pytest.mark.parametrize("where", ["within_train", "train_vs_test"])
def test_mixed_sizes_are_a_data_error_mentioning_image_size(
    tiny_image_root: Path, where: str
) -> None:
    if where == "within_train":
        _write_rgb(tiny_image_root / "train" / "a" / "999.png", height=10, width=12)
    else:
        for f in sorted((tiny_image_root / "test").rglob("*.png")):
            _write_rgb(f, height=6, width=6)

    with pytest.raises(DataError, match="--image_size"):
        load_data(tiny_image_root)


def test_grayscale_first_test_image_in_an_rgb_data_set(tiny_image_root: Path) -> None:
    from PIL import Image

    Image.fromarray(np.full((8, 8), 90, dtype=np.uint8)).save(tiny_image_root / "test/a/000.png")

    source = load_data(tiny_image_root)

    assert source.test.images.shape == (12, 3, 8, 8)


def test_one_grayscale_image_does_not_make_an_rgb_data_set_gray(tiny_image_root: Path) -> None:
    from PIL import Image

    for split in ("train", "test"):
        Image.fromarray(np.full((8, 8), 90, dtype=np.uint8)).save(
            tiny_image_root / split / "a/000.png"
        )

    source = load_data(tiny_image_root)

    assert source.input_shape == (3, 8, 8)


def test_16_bit_grayscale_images_keep_their_contrast(tmp_path: Path) -> None:
    from PIL import Image

    pixels = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    for split in ("train", "test"):
        for name in ("a", "b"):
            path = tmp_path / split / name / "0.png"
            path.parent.mkdir(parents=True)
            Image.fromarray(pixels).save(path)

    source = load_data(tmp_path)

    assert source.input_shape == (1, 8, 8)
    np.testing.assert_allclose(source.train.images[0, 0].numpy(), pixels / 257.0, atol=1.0)


def test_image_size_resizes_every_image(tiny_image_root: Path) -> None:
    _write_rgb(tiny_image_root / "train" / "a" / "999.png", height=10, width=12)
    _write_rgb(tiny_image_root / "test" / "a" / "999.png", height=5, width=7)

    source = load_data(tiny_image_root, image_size=(6, 4))

    assert source.train.images.shape == (37, 3, 6, 4)
    assert source.test.images.shape == (13, 3, 6, 4)
    assert source.input_shape == (3, 6, 4)


def test_missing_test_split_gives_an_empty_test_set(
    tiny_image_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import shutil

    shutil.rmtree(tiny_image_root / "test")

    with caplog.at_level(logging.WARNING, logger="evoband.training._data"):
        source = load_data(tiny_image_root)

    assert len(source.test) == 0
    assert source.test.images.shape[1:] == (3, 8, 8)
    assert "No test/ split" in caplog.text


# --- where the data is looked for ---------------------------------------------------------------


def test_find_data_dir_prefers_the_explicit_dir(
    image_folder_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    explicit = image_folder_factory("explicit", n_train=3, n_test=1)
    from_env = image_folder_factory("from_env", n_train=3, n_test=1)
    monkeypatch.setenv(DATA_ENV, str(from_env))

    assert find_data_dir(explicit) == explicit
    assert candidate_data_dirs(explicit) == [explicit]


def test_find_data_dir_uses_the_environment_variable_before_the_defaults(
    image_folder_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_env = image_folder_factory("from_env", n_train=3, n_test=1)
    monkeypatch.setenv(DATA_ENV, str(from_env))

    assert find_data_dir() == from_env
    assert candidate_data_dirs()[0] == from_env
    assert load_data().location == str(from_env)


def test_find_data_dir_error_lists_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_repo = tmp_path / "repo"
    monkeypatch.setattr(data, "repo_root", lambda: fake_repo)
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "env_dir"))

    with pytest.raises(DataError) as info:
        find_data_dir()

    message = str(info.value)
    looked = [
        tmp_path / "env_dir",
        fake_repo / "micro17flower",
        fake_repo.parent / "shared" / "micro17flower",
    ]
    for path in looked:
        assert str(path) in message
    positions = [message.index(str(p)) for p in looked]
    assert positions == sorted(positions)
    assert DATA_ENV in message and "--data_dir" in message


def test_find_data_dir_explicit_missing_dir_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="nowhere"):
        find_data_dir(missing)
    # A folder without train/ does not count either.
    missing.mkdir()
    with pytest.raises(DataError, match="nowhere"):
        load_data(missing)


# --- digits -------------------------------------------------------------------------------------


def test_digits_source() -> None:
    source = load_data("digits")

    assert len(source.train) + len(source.test) == 1797
    assert source.n_classes == 10
    assert source.classes == tuple(str(d) for d in range(10))
    assert source.input_shape == (1, 8, 8)
    assert source.train.images.dtype == torch.uint8
    assert source.test.images.shape[1:] == (1, 8, 8)
    assert int(source.train.images.max()) == 255
    # Stratified: every class is in both splits.
    assert torch.bincount(source.test.labels, minlength=10).min() > 0
    # The split is fixed: a second load gives the same tensors.
    again = load_data("digits")
    assert torch.equal(source.train.images, again.train.images)
    assert torch.equal(source.train.labels, again.train.labels)
    assert torch.equal(source.test.labels, again.test.labels)


# --- folds and batches --------------------------------------------------------------------------


def _labels(
    seed: int, n_classes: int = 4, per_class: tuple[int, ...] = (7, 9, 12, 5)
) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.full(n, c) for c, n in zip(range(n_classes), per_class, strict=True)])
    return torch.from_numpy(rng.permutation(y).astype(np.int64))


@pytest.mark.parametrize("k", [2, 3, 5])
def test_stratified_folds(seed: int, k: int) -> None:
    labels = _labels(seed)
    y = labels.numpy()

    folds = stratified_folds(labels, k=k, seed=seed)

    assert len(folds) == k
    valid = [set(f.valid_idx.tolist()) for f in folds]
    for i in range(k):
        for j in range(i + 1, k):
            assert not valid[i] & valid[j]
    assert set().union(*valid) == set(range(len(y)))
    for fold in folds:
        assert set(fold.train_idx.tolist()) | set(fold.valid_idx.tolist()) == set(range(len(y)))
        assert not set(fold.train_idx.tolist()) & set(fold.valid_idx.tolist())
    # Stratified: each class is spread over the folds as evenly as possible.
    for c in range(4):
        per_fold = [int((y[f.valid_idx] == c).sum()) for f in folds]
        assert max(per_fold) - min(per_fold) <= 1

    again = stratified_folds(labels, k=k, seed=seed)
    for a, b in zip(folds, again, strict=True):
        np.testing.assert_array_equal(a.valid_idx, b.valid_idx)
        np.testing.assert_array_equal(a.train_idx, b.train_idx)
    other = stratified_folds(labels, k=k, seed=seed + 1)
    assert any(
        not np.array_equal(a.valid_idx, b.valid_idx) for a, b in zip(folds, other, strict=True)
    )


@pytest.mark.parametrize(("k", "match"), [(1, "must be >= 2"), (6, "only 5 training images")])
def test_stratified_folds_rejects_bad_k(k: int, match: str) -> None:
    with pytest.raises(DataError, match=match):
        stratified_folds(_labels(0), k=k)


@pytest.mark.parametrize(("n", "batch_size"), [(10, 3), (12, 4), (5, 32), (1, 1)])
def test_batch_indices(n: int, batch_size: int, seed: int) -> None:
    ordered = list(batch_indices(n, batch_size))
    assert torch.equal(torch.cat(ordered), torch.arange(n))
    assert [len(b) for b in ordered[:-1]] == [batch_size] * (len(ordered) - 1)
    assert 0 < len(ordered[-1]) <= batch_size
    assert len(ordered) == -(-n // batch_size)

    shuffled = list(batch_indices(n, batch_size, torch.Generator().manual_seed(seed)))
    assert [len(b) for b in shuffled] == [len(b) for b in ordered]
    assert sorted(torch.cat(shuffled).tolist()) == list(range(n))
    again = list(batch_indices(n, batch_size, torch.Generator().manual_seed(seed)))
    assert all(torch.equal(a, b) for a, b in zip(shuffled, again, strict=True))


def test_batch_indices_shuffles() -> None:
    order = torch.cat(list(batch_indices(100, 7, torch.Generator().manual_seed(0))))
    assert not torch.equal(order, torch.arange(100))


# --- augmentation -------------------------------------------------------------------------------


def _batch(seed: int, shape: tuple[int, ...] = (16, 3, 8, 6)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    ("flip_prob", "max_shift"), [(0.0, 0), (0.5, 0), (0.0, 2), (0.5, 1), (1.0, 3)]
)
def test_augment_keeps_shape_and_is_reproducible(
    seed: int, flip_prob: float, max_shift: int
) -> None:
    x = _batch(seed)
    out = augment(x, flip_prob, max_shift, torch.Generator().manual_seed(seed))
    again = augment(x, flip_prob, max_shift, torch.Generator().manual_seed(seed))

    assert out.shape == x.shape
    assert out.dtype == x.dtype
    assert torch.equal(out, again)


def test_augment_without_flip_or_shift_is_identity(seed: int) -> None:
    x = _batch(seed)
    assert torch.equal(augment(x, 0.0, 0, torch.Generator().manual_seed(seed)), x)


def test_augment_flip_prob_one_flips_every_image(seed: int) -> None:
    x = _batch(seed)
    assert torch.equal(augment(x, 1.0, 0, torch.Generator().manual_seed(seed)), x.flip(3))


def test_augment_flip_half_flips_some(seed: int) -> None:
    x = _batch(seed, (64, 1, 4, 4))
    out = augment(x, 0.5, 0, torch.Generator().manual_seed(seed))
    flipped = [torch.equal(o, xi.flip(2)) for o, xi in zip(out, x, strict=True)]
    kept = [torch.equal(o, xi) for o, xi in zip(out, x, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 10 < sum(flipped) < 54


@pytest.mark.parametrize("max_shift", [1, 2])
def test_augment_shift_is_a_crop_of_the_zero_padded_image(seed: int, max_shift: int) -> None:
    x = _batch(seed, (32, 2, 5, 7))
    s = max_shift
    out = augment(x, 0.0, s, torch.Generator().manual_seed(seed))
    padded = torch.nn.functional.pad(x, (s, s, s, s))
    offsets = set()
    for i in range(len(x)):
        matches = [
            (dy, dx)
            for dy in range(2 * s + 1)
            for dx in range(2 * s + 1)
            if torch.equal(out[i], padded[i, :, dy : dy + 5, dx : dx + 7])
        ]
        assert len(matches) == 1, f"sample {i} is no shifted crop"
        offsets.add(matches[0])
    assert len(offsets) > 1  # the shifts vary over the batch


def test_augment_different_generators_differ() -> None:
    x = _batch(0)
    a = augment(x, 0.5, 2, torch.Generator().manual_seed(0))
    b = augment(x, 0.5, 2, torch.Generator().manual_seed(1))
    assert not torch.equal(a, b)


# --- the real data set --------------------------------------------------------------------------


def test_real_micro17flower() -> None:
    try:
        root = find_data_dir()
    except DataError:
        pytest.skip("micro17flower images are not available")
    if root.name != "micro17flower":
        pytest.skip(f"the default data folder is {root}, not micro17flower")

    source = load_data(root)

    assert len(source.train) == 1020
    assert len(source.test) == 340
    assert source.input_shape == (3, 16, 16)
    assert source.n_classes == 17
    assert torch.bincount(source.train.labels).tolist() == [60] * 17
    assert torch.bincount(source.test.labels).tolist() == [20] * 17
