"""The demo's data: three shapes drawn on noise, written as PNG files, decoded and augmented.

Every image is 32x32 grey pixels: a circle, a square or a triangle of random size and
place, brighter than a noisy background. ``make_dataset`` writes them once in the
layout ``weft.data.from_image_folder`` reads (``<split>/<class>/<n>.png``).
"""

from __future__ import annotations

import shutil
import zlib
from pathlib import Path

import numpy as np

__all__ = ["CLASSES", "SIDE", "draw", "load_example", "load_plain", "make_dataset", "normalize"]

CLASSES = ("circle", "square", "triangle")
#: Images are SIDE x SIDE pixels; the model sees SIDE * SIDE inputs.
SIDE = 32

# The drawing, in pixels and in [0, 1] intensities: shapes of radius 6 to 11 pixels fit
# in the image wherever their centre lands (at most 4 pixels from the middle), and are
# brighter (0.65 to 1.0) than the background noise (mean 0.25, spread 0.12), so the
# classes are learnable but not trivially so.
_RADIUS = (6.0, 11.0)
_CENTRE_JITTER = 4.0
_SQUARE_HALF_SIDE = 0.85   # x the radius: a square about as large as the circle
_BACKGROUND_MEAN, _BACKGROUND_SPREAD = 0.25, 0.12
_FOREGROUND = (0.65, 1.0)

#: Mean and spread of this dataset's pixel values (measured): normalising by them gives
#: inputs of about mean 0 and unit spread, which plain SGD on the MLP needs.
PIXEL_MEAN, PIXEL_SPREAD = 0.35, 0.25
#: Augmentation: a brightness shift of up to this many steps of _BRIGHTNESS_STEP either way.
_BRIGHTNESS_STEPS, _BRIGHTNESS_STEP = 5, 0.01


def draw(kind: int, rng: np.random.Generator) -> np.ndarray:
    """One SIDE x SIDE uint8 image of shape ``CLASSES[kind]`` at a random place and size, on noise."""
    y, x = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32)
    r = rng.uniform(*_RADIUS)
    cx, cy = SIDE / 2 + rng.uniform(-_CENTRE_JITTER, _CENTRE_JITTER, size=2)
    if kind == 0:
        mask = (x - cx) ** 2 + (y - cy) ** 2 <= r * r
    elif kind == 1:
        mask = (np.abs(x - cx) <= r * _SQUARE_HALF_SIDE) & (np.abs(y - cy) <= r * _SQUARE_HALF_SIDE)
    else:
        top = cy - r
        mask = (y >= top) & (y <= cy + r) & (np.abs(x - cx) <= (y - top) / 2)
    image = rng.normal(_BACKGROUND_MEAN, _BACKGROUND_SPREAD, size=(SIDE, SIDE))
    image[mask] = rng.uniform(*_FOREGROUND)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def make_dataset(root: Path, *, train_per_class: int, val_per_class: int, seed: int = 0) -> dict[str, int]:
    """Write root/{train,val}/<class>/<n>.png unless they are already there; images per split."""
    from PIL import Image

    counts = {"train": train_per_class, "val": val_per_class}
    marker = root / "complete.txt"
    expected = f"{train_per_class} {val_per_class} {seed}"
    if marker.exists() and marker.read_text() == expected:
        return {split: n * len(CLASSES) for split, n in counts.items()}
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(seed)
    for split, n in counts.items():
        for kind, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(draw(kind, rng)).save(folder / f"{i:05d}.png")
    marker.write_text(expected)
    return {split: n * len(CLASSES) for split, n in counts.items()}


def load_example(item: tuple[str, int]) -> tuple[np.ndarray, int]:
    """Decode one PNG and augment it (a flip and a brightness shift chosen by its path)."""
    from PIL import Image

    path, label = item
    with Image.open(path) as image:
        pixels = np.asarray(image, dtype=np.float32) / 255.0
    choice = zlib.crc32(path.encode())  # the same augmentation for a file every epoch: reproducible
    if choice & 1:
        pixels = pixels[:, ::-1]
    shift = (choice >> 1) % (2 * _BRIGHTNESS_STEPS + 1) - _BRIGHTNESS_STEPS
    pixels = pixels + shift * _BRIGHTNESS_STEP
    return np.ascontiguousarray(normalize(pixels).reshape(-1)), label


def load_plain(item: tuple[str, int]) -> tuple[np.ndarray, int]:
    """Decode one PNG without augmentation (validation)."""
    from PIL import Image

    path, label = item
    with Image.open(path) as image:
        return normalize(np.asarray(image, dtype=np.float32) / 255.0).reshape(-1), label


def normalize(pixels: np.ndarray) -> np.ndarray:
    """Centre and scale pixel values (about mean 0, unit spread for this dataset)."""
    return (pixels - PIXEL_MEAN) / PIXEL_SPREAD
