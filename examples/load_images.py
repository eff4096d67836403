"""Load images with weft.data: decode and augment in parallel, batch, prefetch, then
print where the time went.

    python examples/load_images.py [--images 256] [--workers 2]

Generates a small image folder (two classes of random JPEGs) in a temporary directory.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

import weft.data as wd

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def make_images(root: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / ("cat" if i % 2 else "dog")
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, size=(96, 128, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:05d}.jpg", quality=90)


def decode(item: tuple[str, int]) -> dict[str, object]:
    """JPEG decode, random-ish crop and flip (seeded by the path), normalise."""
    path, label = item
    with Image.open(path) as im:
        image = np.asarray(im.convert("RGB"), dtype=np.uint8)
    seed = sum(path.encode()) % 1000
    top, left = seed % 32, seed % 64
    crop = image[top:top + 64, left:left + 64]
    if seed % 2:
        crop = crop[:, ::-1]
    x = (crop.astype(np.float32) / 255.0 - MEAN) / STD
    return {"image": x.transpose(2, 0, 1), "label": label}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_images(root, args.images)
        source = wd.from_image_folder(root)
        pipe = (source.shuffle(seed=0)
                .map(decode, workers=args.workers)
                .batch(32)
                .prefetch(2))
        images = 0
        for batch in pipe:
            images += len(batch["label"])
        print(f"{images} images in {len(source.classes)} classes {source.classes}; "
              f"last batch {batch['image'].shape} {batch['image'].dtype}")
        print(pipe.statistics())


if __name__ == "__main__":
    main()
