"""The three Load workloads: data generators and the per-item functions every contender runs.

Every contender (serial loop, weft, DataLoader, SPDL, Grain, torchdata.nodes) calls exactly
these functions on exactly these items; only the machinery around them differs. The module
imports nothing outside the standard library, NumPy and Pillow, so it loads in every peer's
environment and in spawned worker processes.

- ``images``: 256x256 JPEG files -> read, decode, random-resized-crop to 224, flip,
  normalize -> float32 CHW; batches of 32.
- ``text``: ~2 KB documents (one file each) -> lowercase, regex split, vocabulary lookup,
  hashing of unknown words -> int32[256]; batches of 64.
- ``io``: an integer -> a 5 ms blocking wait standing in for a network read, then light
  NumPy work -> float32[256]; batches of 32.

Random augmentation is seeded from the item itself, so every contender does the same work
whatever the thread or process that runs the item.
"""

from __future__ import annotations

import math
import os
import random
import re
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "WORKLOADS",
    "Workload",
    "collate",
    "ensure_data",
    "image_item",
    "io_item",
    "items_for",
    "large_item",
    "matmul_item",
    "medium_item",
    "record_item",
    "slow_io_item",
    "spectro_item",
    "text_item",
]

DATA_ROOT = Path(__file__).resolve().parent.parent / ".data"

# --------------------------------------------------------------------------- images
IMAGE_SIZE = 256
CROP = 224
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255.0
_INV_STD = 1.0 / (np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255.0)


def _crop_box(rng: random.Random, width: int, height: int) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop box: scale (0.08, 1), ratio (3/4, 4/3), 10 tries."""
    area = width * height
    log_lo, log_hi = math.log(3 / 4), math.log(4 / 3)
    for _ in range(10):
        target = area * rng.uniform(0.08, 1.0)
        ratio = math.exp(rng.uniform(log_lo, log_hi))
        w = round(math.sqrt(target * ratio))
        h = round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            x = rng.randint(0, width - w)
            y = rng.randint(0, height - h)
            return x, y, x + w, y + h
    side = min(width, height)
    x, y = (width - side) // 2, (height - side) // 2
    return x, y, x + side, y + side


def image_item(path: str) -> np.ndarray:
    """Read and decode one JPEG, random-resized-crop to 224, flip, normalize: float32 CHW."""
    from PIL import Image

    with open(path, "rb") as f:
        data = f.read()
    import io

    with Image.open(io.BytesIO(data)) as img:
        img = img.convert("RGB")
    rng = random.Random(zlib.crc32(path.encode()))
    box = _crop_box(rng, img.width, img.height)
    img = img.resize((CROP, CROP), Image.Resampling.BILINEAR, box=box)
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    hwc = np.asarray(img, dtype=np.float32)
    chw = np.empty((3, CROP, CROP), dtype=np.float32)
    for c in range(3):
        np.subtract(hwc[:, :, c], _MEAN[c], out=chw[c])
        chw[c] *= _INV_STD[c]
    return chw


def _generate_images(root: Path, count: int, seed: int) -> None:
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32) / IMAGE_SIZE
    for i in range(count):
        # smooth colour gradients + shapes + noise: compresses like a photo, not like a flat fill
        a, b, c = rng.uniform(0, 1, 3), rng.uniform(-1, 1, 3), rng.uniform(-1, 1, 3)
        base = (a[None, None, :] + b[None, None, :] * xx[..., None] + c[None, None, :] * yy[..., None]) * 180
        base += rng.normal(0, 12, (IMAGE_SIZE, IMAGE_SIZE, 3))
        img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(4, 12))):
            x0, y0 = (int(v) for v in rng.integers(0, IMAGE_SIZE, 2))
            x1, y1 = x0 + int(rng.integers(10, 120)), y0 + int(rng.integers(10, 120))
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            if rng.random() < 0.5:
                draw.ellipse((x0, y0, x1, y1), fill=colour)
            else:
                draw.rectangle((x0, y0, x1, y1), fill=colour)
        img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 1.5))))
        img.save(root / f"{i:05d}.jpg", quality=90)


# --------------------------------------------------------------------------- text
TEXT_TOKENS = 256
VOCAB_SIZE = 8000
HASH_BUCKETS = 4096
_PAD = 0
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def _synthetic_words(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    weights = [12.7, 9.1, 8.2, 7.5, 7.0, 6.7, 6.3, 6.1, 6.0, 4.3, 4.0, 2.8, 2.8, 2.4, 2.4, 2.2, 2.0,
               2.0, 1.9, 1.5, 1.0, 0.8, 0.15, 0.15, 0.1, 0.07]
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < count:
        length = max(1, min(14, int(rng.gauss(6, 2.5))))
        word = "".join(rng.choices(letters, weights, k=length))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


# The vocabulary: ids 1..VOCAB_SIZE-1 (0 pads); unknown words hash into VOCAB_SIZE + bucket.
_VOCAB_WORDS = _synthetic_words(VOCAB_SIZE - 1, seed=1234)
VOCAB: dict[str, int] = {w: i + 1 for i, w in enumerate(_VOCAB_WORDS)}


def _fnv1a(word: str) -> int:
    h = 0x811C9DC5
    for byte in word.encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def text_item(path: str) -> np.ndarray:
    """Tokenize one document in pure Python: int32[256], zero-padded."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    ids: list[int] = []
    vocab = VOCAB
    for word in _WORD.findall(text.lower()):
        # vocab[word], not vocab.get(word): on CPython 3.13t, dict.get on a dict built by
        # another thread, with a key that is an equal but not identical str, costs ~20 us
        # per call (measured 49 thousand calls/s against 11.6 million for d[k]); with it,
        # every threaded contender on 3.13t collapsed to ~90 documents/s.
        try:
            token = vocab[word]
        except KeyError:
            token = VOCAB_SIZE + _fnv1a(word) % HASH_BUCKETS
        ids.append(token)
    ids = ids[:TEXT_TOKENS]
    if len(ids) < TEXT_TOKENS:
        ids.extend([_PAD] * (TEXT_TOKENS - len(ids)))
    return np.array(ids, dtype=np.int32)


def _generate_text(root: Path, count: int, seed: int) -> None:
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    oov = _synthetic_words(3000, seed=seed + 1)
    oov = [w for w in oov if w not in VOCAB]
    # Zipf-like weights over the vocabulary
    weights = [1.0 / (rank + 1) ** 1.05 for rank in range(len(_VOCAB_WORDS))]
    cumulative = list(__import__("itertools").accumulate(weights))
    for i in range(count):
        target = int(rng.gauss(2048, 200))
        parts: list[str] = []
        size = 0
        sentence_start = True
        while size < target:
            if rng.random() < 0.08:
                word = rng.choice(oov)
            else:
                word = rng.choices(_VOCAB_WORDS, cum_weights=cumulative, k=1)[0]
            if sentence_start:
                word = word.capitalize()
                sentence_start = False
            if rng.random() < 0.07:
                word += rng.choice([".", ".", ",", "!", "?", ";"])
                sentence_start = word[-1] in ".!?"
            parts.append(word)
            size += len(word) + 1
        (root / f"{i:05d}.txt").write_text(" ".join(parts) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- io
IO_WAIT_SECONDS = 0.005


def io_item(index: int) -> np.ndarray:
    """A 5 ms blocking wait (a network read stand-in), then light NumPy work: float32[256]."""
    time.sleep(IO_WAIT_SECONDS)
    rng = np.random.default_rng(index)
    x = rng.standard_normal(256).astype(np.float32)
    x -= x.mean()
    x /= x.std() + 1e-6
    return x


# --------------------------------------------------------------------------- io, 50 ms
IO_LONG_WAIT_SECONDS = 0.050


def slow_io_item(index: int) -> np.ndarray:
    """A 50 ms blocking wait (a slow remote read), then light NumPy work: float32[256]."""
    time.sleep(IO_LONG_WAIT_SECONDS)
    return np.full(256, index % 251, dtype=np.float32) / 251.0


# --------------------------------------------------------------------------- pure Python, small items
_RECORD_KEYS = tuple(f"f{i:02d}" for i in range(24))


def record_item(index: int) -> np.ndarray:
    """Parse one small CSV-like record in pure Python (split, float conversion, running
    statistics): float32[8]. Tens of microseconds, all of it holding the GIL."""
    rng = random.Random(index)
    line = ";".join(f"{key}={rng.random() * 100:.4f}" for key in _RECORD_KEYS)
    fields = dict(part.split("=", 1) for part in line.split(";"))
    values = [float(fields[key]) for key in _RECORD_KEYS]
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / len(values)
    return np.array([mean, var, min(values), max(values), values[0], values[-1], len(line), index % 7],
                    dtype=np.float32)


# --------------------------------------------------------------------------- NumPy-heavy (GIL released)
_MATRIX = np.random.default_rng(7).standard_normal((320, 320)).astype(np.float32)


def matmul_item(index: int) -> np.ndarray:
    """A 320x320 float32 matrix product and a reduction (BLAS, GIL released): float32[320]."""
    a = _MATRIX * np.float32(1.0 + (index % 97) * 1e-3)
    product = a @ _MATRIX.T
    return np.abs(product).sum(axis=0, dtype=np.float32)


# --------------------------------------------------------------------------- mixed NumPy + Python
SPECTRO_FRAMES, SPECTRO_BINS, SPECTRO_HOP = 160, 128, 100
_WINDOW = np.hanning(2 * (SPECTRO_BINS - 1)).astype(np.float32)


def spectro_item(index: int) -> np.ndarray:
    """A log-magnitude spectrogram of a synthetic 1 s clip (NumPy) plus pure-Python parsing
    of its metadata: float32[160, 128] (80 KB), the shape of the issue's example."""
    rng = np.random.default_rng(index)
    n = SPECTRO_HOP * (SPECTRO_FRAMES - 1) + _WINDOW.size
    clip = rng.standard_normal(n).astype(np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(clip, _WINDOW.size)[::SPECTRO_HOP][:SPECTRO_FRAMES]
    spec = np.log1p(np.abs(np.fft.rfft(frames * _WINDOW, axis=1))).astype(np.float32)
    meta = ",".join(f"tag{i}:{(index * 31 + i) % 1000}" for i in range(60))
    tags = {k: int(v) for k, v in (t.split(":") for t in meta.split(","))}
    gain = sum(v for k, v in tags.items() if int(k[3:]) % 3 == 0) / (1000.0 * len(tags))
    spec *= np.float32(1.0 + gain)
    return spec


# --------------------------------------------------------------------------- 256 KB and 4 MB results
_FILTER = np.exp(-np.add.outer(np.arange(256) ** 2, np.arange(129) ** 2) / 800.0).astype(np.float32)


def medium_item(index: int) -> np.ndarray:
    """A low-pass filter of a 256x256 field through 2-D FFTs: float32[256, 256] (256 KB)."""
    rng = np.random.default_rng(index)
    field = rng.standard_normal((256, 256), dtype=np.float32)
    return np.fft.irfft2(np.fft.rfft2(field) * _FILTER, s=field.shape).astype(np.float32)


def large_item(index: int) -> np.ndarray:
    """A 1024x1024 float32 field from an outer product and a sine (4 MB per result)."""
    x = np.linspace(0.0, 1.0 + index % 13, 1024, dtype=np.float32)
    out = np.multiply.outer(x, x[::-1])
    np.sin(out, out=out)
    return out


# --------------------------------------------------------------------------- registry
def collate(samples: Sequence[np.ndarray]) -> np.ndarray:
    """Stack per-item arrays into one batch (the collate every non-torch contender uses)."""
    return np.stack(samples)


@dataclass(frozen=True, kw_only=True)
class Workload:
    name: str
    fn: Callable[[Any], np.ndarray]
    batch_size: int
    #: items of the long length (about 30 s of serial work on the benchmark machine)
    items: int
    #: items of the short length (about 1 s of serial work)
    quick_items: int
    description: str
    #: "cpu" (bounded by cores) or "io" (bounded by waiting, not cores)
    kind: str
    #: items the serial loop runs at each length when fewer than the contenders' (its rate is
    #: all the table uses, and waiting work takes minutes serially at the contenders' count)
    serial_quick_items: int | None = None
    serial_items: int | None = None


WORKLOADS: dict[str, Workload] = {
    "records": Workload(name="records", fn=record_item, batch_size=64, items=750_000, quick_items=25_000,
                        kind="cpu", description="pure Python on small items: parse a 24-field record, "
                                                "statistics -> float32[8]; batch 64"),
    "matmul": Workload(name="matmul", fn=matmul_item, batch_size=16, items=35_000, quick_items=1_200,
                       kind="cpu", description="NumPy-heavy (GIL released): 320x320 float32 matrix product "
                                               "and reduction -> float32[320]; batch 16"),
    "spectro": Workload(name="spectro", fn=spectro_item, batch_size=16, items=12_800, quick_items=432,
                        kind="cpu", description="mixed: NumPy spectrogram + pure-Python metadata parsing -> "
                                                "float32[160,128] (80 KB); batch 16"),
    "medium": Workload(name="medium", fn=medium_item, batch_size=16, items=15_500, quick_items=512,
                       kind="cpu", description="256 KB results: 2-D FFT low-pass of a 256x256 field -> "
                                               "float32[256,256]; batch 16"),
    "large": Workload(name="large", fn=large_item, batch_size=4, items=10_000, quick_items=336,
                      kind="cpu", description="4 MB results: outer product + sine -> float32[1024,1024]; "
                                              "batch 4"),
    "images": Workload(name="images", fn=image_item, batch_size=32, items=15_000, quick_items=512,
                       kind="cpu",
                       description="image decode + augment: 256x256 JPEG, read, decode, random-resized-crop "
                                   "224, flip, normalize to float32 CHW; batch 32"),
    "text": Workload(name="text", fn=text_item, batch_size=64, items=80_000, quick_items=2_700,
                     kind="cpu",
                     description="tokenisation: ~2 KB document, lowercase, regex split, vocabulary lookup, "
                                 "hashing of unknown words to int32[256]; batch 64"),
    "io": Workload(name="io", fn=io_item, batch_size=32, items=5_200, quick_items=176, kind="io",
                   description="5 ms blocking read (sleep) + light NumPy work; batch 32"),
    # Enough items that a thread count sized to the waits has time to show (32 threads
    # deliver ~640 items/s here: 3,000 items take them ~5 s); the serial loop runs ~1 s and
    # ~30 s of them.
    "io50": Workload(name="io50", fn=slow_io_item, batch_size=32, items=6_000, quick_items=3_000, kind="io",
                     description="50 ms blocking read (sleep) + light NumPy work; batch 32",
                     serial_quick_items=20, serial_items=600),
}

_GENERATED = {"images": 2000, "text": 20000}


def ensure_data(name: str, root: Path = DATA_ROOT, seed: int = 0) -> Path | None:
    """Generate the workload's files once (seeded); returns their directory (None for io)."""
    if name not in _GENERATED:
        return None
    directory = root / name
    stamp = directory / ".complete"
    if stamp.exists() and stamp.read_text() == f"{_GENERATED[name]} {seed}":
        return directory
    if directory.exists():
        for p in directory.iterdir():
            p.unlink()
    if name == "images":
        _generate_images(directory, _GENERATED[name], seed)
    else:
        _generate_text(directory, _GENERATED[name], seed)
    stamp.write_text(f"{_GENERATED[name]} {seed}")
    return directory


def items_for(name: str, count: int, root: Path = DATA_ROOT) -> list[Any]:
    """The first ``count`` items of a workload: file paths (sorted) or integers."""
    if name not in _GENERATED:
        return list(range(count))
    suffix = ".jpg" if name == "images" else ".txt"
    directory = root / name
    paths = sorted(str(directory / f) for f in os.listdir(directory) if f.endswith(suffix))
    if not paths:
        raise SystemExit(f"{directory} holds no items: regenerate the data")
    # a long epoch goes round the files again (from the page cache, like a second epoch)
    return [paths[i % len(paths)] for i in range(count)]
