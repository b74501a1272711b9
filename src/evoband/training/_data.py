"""Image data: folders (or scikit-learn's digits) decoded once into tensors; splits; batches.

Images live in memory as one uint8 tensor ``N x C x H x W``; a batch is an index slice of it and
augmentation is a batched tensor operation on the training device, so no DataLoader is needed.
Class indices follow the sorted folder names (string order, as torchvision's ImageFolder does).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from sklearn.model_selection import StratifiedKFold, train_test_split

from ..core._errors import DataError
from ..core._paths import repo_root

logger = logging.getLogger(__name__)

DATA_ENV = "EVOBAND_DATA"
DIGITS = "digits"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}

MEMORY_FRACTION = 0.5
"""Share of the available memory a data set may take once decoded; the rest is left for the
networks, their activations and optimizer state, and for everything else on the machine."""

BYTES_PER_VALUE = 4 + 1
"""Bytes one decoded pixel channel costs: the float32 copy training makes of a whole split
(``normalize``) plus the uint8 tensor the loader keeps. Decoding itself peaks at 3 uint8 copies
(the decoded arrays, their stack and its channel-first copy), below this."""


@dataclass(frozen=True)
class ImageSet:
    """One split: uint8 images ``N x C x H x W`` and int64 labels."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class DataSource:
    """A data set with a training and a test split sharing one class list."""

    name: str
    location: str
    classes: tuple[str, ...]
    train: ImageSet
    test: ImageSet

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.train.images.shape[1:]
        return int(c), int(h), int(w)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def describe(self) -> dict[str, object]:
        """A JSON-able summary for run records."""
        return {
            "name": self.name,
            "location": self.location,
            "n_train": len(self.train),
            "n_test": len(self.test),
            "n_classes": self.n_classes,
            "input_shape": list(self.input_shape),
        }


def candidate_data_dirs(data_dir: str | Path | None = None) -> list[Path]:
    """Where the flower images are looked for, in order."""
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    found: list[Path] = []
    if os.environ.get(DATA_ENV):
        found.append(Path(os.environ[DATA_ENV]).expanduser())
    root = repo_root()
    found += [root / "micro17flower", root.parent / "shared" / "micro17flower"]
    return found


def find_data_dir(data_dir: str | Path | None = None) -> Path:
    """The first candidate folder that holds a ``train/`` split; an error listing them if none."""
    candidates = candidate_data_dirs(data_dir)
    for path in candidates:
        if (path / "train").is_dir():
            return path
    looked = ", ".join(str(p) for p in candidates)
    raise DataError(
        f"No image data found (looked in: {looked}). Put the images in micro17flower/train and "
        f"micro17flower/test (see micro17flower/README.md), pass --data_dir DIR or set ${DATA_ENV}, "
        f"or use --data_dir {DIGITS} for the bundled digits set."
    )


def load_data(
    data_dir: str | Path | None = None, image_size: Sequence[int] | None = None
) -> DataSource:
    """Load a data set: ``"digits"``, a folder with ``train/`` and ``test/``, or the default.

    Args:
        data_dir: a folder, the name ``digits``, or None for the default search order.
        image_size: (H, W) to resize every image to on load; None keeps the stored size.
    """
    if data_dir is not None and str(data_dir) == DIGITS:
        return load_digits()
    root = find_data_dir(data_dir)
    classes = _class_names(root / "train")
    check_class_count(len(classes), str(root / "train"))
    test_dir = root / "test"
    # list both splits and refuse a set that cannot fit before decoding any of it
    has_test = test_dir.is_dir()
    train_files = _list_image_files(root / "train", classes)
    test_files = _list_image_files(test_dir, classes) if has_test else []
    check_decoded_memory(
        [train_files, test_files], image_size, where=str(root), available=available_memory()
    )
    train = _decode_images(root / "train", train_files, image_size)
    if has_test:
        test = _decode_images(test_dir, test_files, image_size)
    else:
        logger.warning("No test/ split in %s; test evaluation will not be possible.", root)
        test = ImageSet(train.images[:0], train.labels[:0])
    if len(test) and test.images.shape[1] != train.images.shape[1]:
        # one split has colour: give the grayscale one three channels too
        if train.images.shape[1] == 1:
            train = ImageSet(train.images.repeat(1, 3, 1, 1), train.labels)
        else:
            test = ImageSet(test.images.repeat(1, 3, 1, 1), test.labels)
    if len(test) and test.images.shape[2:] != train.images.shape[2:]:
        raise DataError(
            f"Train and test images differ in size in {root}; pass --image_size H W to resize."
        )
    return DataSource(root.name, str(root), tuple(classes), train, test)


def check_class_count(n_classes: int, where: str) -> None:
    """Refuse fewer than 2 classes; warn below 4, where top-3 accuracy says little."""
    if n_classes < 2:
        raise DataError(
            f"{where} has {n_classes} class folder; classification needs at least 2 "
            "(one folder per class: train/<class>/<image>)."
        )
    if n_classes < 4:
        logger.warning(
            "%s has only %d classes: top-3 accuracy is 1.0 for any network; judge runs by precision.",
            where,
            n_classes,
        )


def _class_names(split_dir: Path) -> list[str]:
    classes = sorted(
        p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    if not classes:
        raise DataError(f"No class folders in {split_dir}; expected {split_dir}/<class>/<image>.")
    return classes


def load_image_folder(
    split_dir: Path, classes: Sequence[str], image_size: Sequence[int] | None = None
) -> ImageSet:
    """Decode every image of ``split_dir/<class>/`` once; class index = position in ``classes``.

    A split of grayscale images keeps one channel; if any image has colour, all get three.
    Entries that are not regular files are skipped with a warning; a split too large for the
    available memory is refused before any image is decoded (:func:`check_decoded_memory`).
    """
    files = _list_image_files(split_dir, classes)
    check_decoded_memory([files], image_size, where=str(split_dir), available=available_memory())
    return _decode_images(split_dir, files, image_size)


def _list_image_files(split_dir: Path, classes: Sequence[str]) -> list[tuple[Path, int]]:
    """The image files of ``split_dir/<class>/`` with their class index, in load order.

    Hidden and non-image names are skipped (one warning for the split); an image name that is
    not a regular file (a FIFO, a socket, a device, a directory, a broken symbolic link) is
    skipped with a warning naming it, and never opened: opening a FIFO blocks until a writer
    comes. Symbolic links to regular files are followed.
    """
    listed: list[tuple[Path, int]] = []
    skipped = 0
    for index, name in enumerate(classes):
        folder = split_dir / name
        if not folder.is_dir():
            raise DataError(f"Class folder {folder} is missing (it exists in the training split).")
        files = sorted(folder.iterdir())
        wanted = [
            f for f in files if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")
        ]
        skipped += len(files) - len(wanted)
        regular = []
        for path in wanted:
            problem = _not_a_regular_file(path)
            if problem is None:
                regular.append(path)
            else:
                logger.warning(
                    "Skipping %s: %s; only regular files (or links to them) are read as images.",
                    path,
                    problem,
                )
        if not regular:
            raise DataError(f"Class folder {folder} holds no images.")
        listed += [(path, index) for path in regular]
    if skipped:
        logger.warning("Skipped %d hidden or non-image files in %s.", skipped, split_dir)
    return listed


def _not_a_regular_file(path: Path) -> str | None:
    """What ``path`` is when it is not a regular file (after following links); None if it is."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if exc.errno == errno.ENOENT and path.is_symlink():
            try:
                return f"it is a broken symbolic link (to {os.readlink(path)})"
            except OSError:
                return "it is a broken symbolic link"
        if exc.errno == errno.ELOOP:
            return "it is a symbolic link loop"
        return f"it cannot be examined ({exc.strerror or exc})"
    return None if stat.S_ISREG(mode) else f"it is {_file_kind(mode)}"


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    return next((kind for test, kind in kinds if test(mode)), "a special file")


def available_memory() -> int | None:
    """Bytes of memory available to this process now; None where that cannot be told.

    Linux's ``MemAvailable`` (memory that can be had without swapping), lowered to the room left
    under a cgroup v2 memory limit (a container's); elsewhere the free physical pages. Tests
    replace this function to fake a small machine.
    """
    found: int | None = None
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    found = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        found = None
    if found is None:
        try:
            found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, OSError, ValueError):
            found = None
    limit = _cgroup_room()
    if limit is not None:
        found = limit if found is None else min(found, limit)
    return found


def _cgroup_room() -> int | None:
    """Bytes left under this process's cgroup v2 memory limit (a container's), or None.

    Reclaimable file cache (``inactive_file``) counts as room, as in ``MemAvailable``. Only the
    process's own cgroup is read, not the limits of its ancestors.
    """
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
        relative = next(line[3:] for line in lines if line.startswith("0::"))
        base = Path("/sys/fs/cgroup") / relative.lstrip("/")
        limit = (base / "memory.max").read_text().strip()
        if limit == "max":
            return None
        used = int((base / "memory.current").read_text())
        for line in (base / "memory.stat").read_text().splitlines():
            if line.startswith("inactive_file "):
                used -= int(line.split()[1])
        return max(0, int(limit) - max(0, used))
    except (OSError, ValueError, StopIteration):
        return None


def estimate_decoded_bytes(
    files: Sequence[Sequence[tuple[Path, int]]], image_size: Sequence[int] | None
) -> tuple[int, int]:
    """(number of images, bytes they take decoded) for the listed splits.

    Every image is counted at ``image_size``, or at the size of its split's first image (all of
    a split must share it), with 3 channels and :data:`BYTES_PER_VALUE` bytes per value. Only
    image headers are read.
    """
    n_images = 0
    total = 0
    for split in files:
        if not split:
            continue
        if image_size is not None:
            height, width = int(image_size[0]), int(image_size[1])
        else:
            width, height = _header_size(split[0][0])
        n_images += len(split)
        total += len(split) * height * width * 3 * BYTES_PER_VALUE
    return n_images, total


def check_decoded_memory(
    files: Sequence[Sequence[tuple[Path, int]]],
    image_size: Sequence[int] | None,
    where: str,
    available: int | None,
) -> None:
    """Refuse a data set whose decoded size exceeds :data:`MEMORY_FRACTION` of ``available``.

    Args:
        files: the listed splits, as :func:`_list_image_files` gives them.
        image_size: (H, W) every image is resized to, or None for the stored size.
        where: the data folder, for the message.
        available: bytes of available memory (:func:`available_memory`); None skips the check.
    """
    if available is None:
        logger.debug("Available memory unknown; the decoded size of %s is not checked.", where)
        return
    n_images, needed = estimate_decoded_bytes(files, image_size)
    allowed = int(available * MEMORY_FRACTION)
    if needed > allowed:
        raise DataError(
            f"The data set in {where} is too large to load: {n_images} images need about "
            f"{needed} bytes ({_gib(needed)}) decoded, but only {allowed} bytes "
            f"({MEMORY_FRACTION:.0%} of the {available} bytes, {_gib(available)}, of available "
            "memory) may be used. Pass a smaller --image_size H W, or use fewer images."
        )


def _gib(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.2f} GiB"


def _header_size(path: Path) -> tuple[int, int]:
    """(width, height) from an image's header, without decoding its pixels."""
    with _open_image(path) as opened:
        return opened.size


def _decode_images(
    split_dir: Path, files: Sequence[tuple[Path, int]], image_size: Sequence[int] | None
) -> ImageSet:
    images: list[np.ndarray] = []
    labels: list[int] = []
    for path, index in files:
        array = read_image(path, image_size)
        if images and array.shape[:2] != images[0].shape[:2]:
            raise DataError(
                f"Image {path} is {array.shape[1]}x{array.shape[0]}, others are "
                f"{images[0].shape[1]}x{images[0].shape[0]}; pass --image_size H W to resize."
            )
        images.append(array)
        labels.append(index)
    if not images:
        raise DataError(f"Split {split_dir} holds no images.")
    channels = max(a.shape[2] for a in images)
    stacked = np.stack(
        [np.repeat(a, channels, axis=2) if a.shape[2] < channels else a for a in images]
    )
    tensor = torch.from_numpy(np.ascontiguousarray(stacked.transpose(0, 3, 1, 2)))
    return ImageSet(tensor, torch.tensor(labels, dtype=torch.int64))


_GRAY_MODES = {"L", "1", "I", "F", "LA"} | {m for m in ("I;16", "I;16B", "I;16L", "I;16N")}


def read_image(path: Path, image_size: Sequence[int] | None = None) -> np.ndarray:
    """One image as ``H x W x C`` uint8 (C = 1 for grayscale, else 3 RGB)."""
    with _open_image(path) as opened:
        opened.load()
        img: Image.Image = opened
        if img.mode.startswith("I") or img.mode == "F":
            # 16/32-bit grayscale: scale to 8 bits instead of clipping at 255
            wide = np.asarray(img, dtype=np.float64)
            top = 65535.0 if wide.max(initial=0) > 255 else 255.0
            img = Image.fromarray(np.clip(wide * (255.0 / top), 0, 255).round().astype(np.uint8))
        pixels = img.convert("L" if img.mode in _GRAY_MODES else "RGB")
        if image_size is not None:
            pixels = pixels.resize(
                (int(image_size[1]), int(image_size[0])), Image.Resampling.BILINEAR
            )
        array = np.asarray(pixels, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


@contextlib.contextmanager
def _open_image(path: Path) -> Iterator[Image.Image]:
    """Pillow's lazy open (header only) of a regular file; a :class:`DataError` naming the file
    for whatever goes wrong reading it, in the ``with`` block too.

    The file is opened without blocking and checked on the open descriptor, so a FIFO put in
    its place after listing cannot block the loader. Pillow's decompression-bomb warning (an
    image over ``Image.MAX_IMAGE_PIXELS``) counts as an error, like its error (over twice that).
    """
    try:
        handle = open(path, "rb", opener=_open_nonblocking)
    except OSError as exc:
        raise DataError(
            f"Cannot read image {path}: {exc.strerror or exc}; remove it or make it readable."
        ) from exc
    with handle:
        mode = os.fstat(handle.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise DataError(
                f"Cannot read image {path}: it is {_file_kind(mode)}, not a regular file; "
                "remove it from the data folder."
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(handle) as image:
                    yield image
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise DataError(
                f"Image {path} is refused as a possible decompression bomb "
                f"({str(exc).rstrip('.')}); remove it or replace it with a smaller copy (or, for a "
                "file you trust, raise PIL.Image.MAX_IMAGE_PIXELS)."
            ) from exc
        except UnidentifiedImageError as exc:
            raise DataError(
                f"Cannot read image {path}: Pillow does not recognise it as an image (damaged, "
                "or another kind of file); remove it or replace it."
            ) from exc
        except OSError as exc:
            raise DataError(f"Cannot read image {path}: {exc}") from exc


def _open_nonblocking(path: str, flags: int) -> int:
    # O_NONBLOCK: opening a FIFO for reading returns at once instead of waiting for a writer
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0))


def load_digits(test_fraction: float = 0.25, seed: int = 0) -> DataSource:
    """scikit-learn's bundled 8x8 digits (1797 images, 10 classes) as a 1-channel image set.

    The train/test split is stratified and fixed (``seed``), so every run sees the same split.
    """
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    pixels = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None, :, :]
    labels = bunch.target.astype(np.int64)
    idx_train, idx_test = train_test_split(
        np.arange(len(labels)), test_size=test_fraction, stratify=labels, random_state=seed
    )

    def subset(idx: np.ndarray) -> ImageSet:
        return ImageSet(torch.from_numpy(pixels[idx]), torch.from_numpy(labels[idx]))

    classes = tuple(str(c) for c in bunch.target_names)
    return DataSource(
        DIGITS, "sklearn.datasets.load_digits", classes, subset(idx_train), subset(idx_test)
    )


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (in [0, 1] units) of uint8 images ``N x C x H x W``."""
    x = images.to(torch.float64) / 255.0
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-6)
    return mean.to(torch.float32), std.to(torch.float32)


def normalize(
    images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """uint8 images to float32 on ``device``, standardised per channel."""
    x = images.to(device=device, dtype=torch.float32) / 255.0
    return (x - mean.to(device)[None, :, None, None]) / std.to(device)[None, :, None, None]


@dataclass(frozen=True)
class Fold:
    """Indices into the training split: the part trained on and the part evaluated on."""

    train_idx: np.ndarray
    valid_idx: np.ndarray


def stratified_folds(labels: torch.Tensor, k: int = 3, seed: int = 0) -> list[Fold]:
    """Shuffled stratified K-fold splits of the training split, fixed by ``seed``."""
    if k < 2:
        raise DataError(f"The number of CV folds is {k}, but must be >= 2.")
    y = labels.numpy()
    smallest = int(np.bincount(y).min()) if len(y) else 0
    if smallest < k:
        raise DataError(f"A class has only {smallest} training images, fewer than {k} CV folds.")
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [Fold(tr, va) for tr, va in splitter.split(np.zeros(len(y)), y)]


def batch_indices(
    n: int, batch_size: int, generator: torch.Generator | None = None
) -> Iterator[torch.Tensor]:
    """Index batches over ``n`` samples: shuffled with ``generator``, in order without one."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def augment(
    x: torch.Tensor, flip_prob: float, max_shift: int, generator: torch.Generator
) -> torch.Tensor:
    """Random horizontal flips and random shifts (zero pad + crop) of a batch, on its device.

    Random draws come from ``generator`` (on the CPU) so that they are reproducible on any device.
    """
    n, _, h, w = x.shape
    if flip_prob > 0:
        flip = (torch.rand(n, generator=generator) < flip_prob).to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if max_shift > 0:
        s = max_shift
        padded = torch.nn.functional.pad(x, (s, s, s, s))
        dy = torch.randint(0, 2 * s + 1, (n,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * s + 1, (n,), generator=generator).to(x.device)
        rows = dy[:, None] + torch.arange(h, device=x.device)[None, :]  # n x h
        cols = dx[:, None] + torch.arange(w, device=x.device)[None, :]  # n x w
        batch = torch.arange(n, device=x.device)[:, None, None]
        # gather per-sample crops: index padded[b, :, rows[b], cols[b]]
        x = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(
            0, 3, 1, 2
        )
    return x.contiguous()
