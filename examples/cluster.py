"""Decode images on a cluster, train on the driver, resume exactly after a stop.

    python examples/cluster.py [--backend ray|dask] [--address ADDRESS] [--workers 2]
                               [--images 96] [--stop-after 3] [--checkpoints DIR]

The decode stage runs on the cluster's workers (Ray tasks, or Dask tasks), one chunk
of paths per call; only the paths travel there and the decoded arrays travel back. The
consumer, a toy training loop, runs here on the driver and saves a checkpoint (its
weights and the pipeline's position, ``pipe.state_dict()``) every batch.

The first run stops after ``--stop-after`` batches, as a job that is preempted would; the
second run restores the latest checkpoint and continues the same epoch: every image
is seen exactly once over the two runs. ``--address`` names a running cluster (Ray:
"auto", "ray://host:10001"; Dask: "tcp://host:8786"); without it Ray uses
``RAY_ADDRESS`` or starts a local instance, and Dask starts a local cluster.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

import weft.data as wd
import weft.train as wt

BATCH = 16


def make_images(root: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / ("cat" if i % 2 else "dog")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, size=(72, 96, 3), dtype=np.uint8)).save(folder / f"{i:05d}.jpg")


def decode(item: tuple[str, int]) -> dict[str, Any]:
    """Runs on the cluster: read and decode a JPEG, crop, normalise."""
    path, label = item
    with Image.open(path) as im:
        image = np.asarray(im.convert("RGB"), dtype=np.float32)[:64, :64] / 255.0
    return {"image": image.transpose(2, 0, 1), "label": label, "index": int(Path(path).stem)}


def pipeline(root: Path, args: argparse.Namespace) -> wd.Pipeline:
    options: dict[str, Any] = {"max_retries": 2}  # a chunk whose node is lost runs again, twice at most
    if args.address:
        options["address"] = args.address
    return (wd.from_image_folder(root)
            .shuffle(seed=0)
            .map(decode, backend=args.backend, workers=args.workers, backend_options=options,
                 **({"resources": {"num_cpus": 1}} if args.backend == "ray" else {}))
            .batch(BATCH))


def train(root: Path, store: wt.Checkpoints, args: argparse.Namespace, *, stop_after: int | None) -> list[int]:
    """One (possibly interrupted) run; returns the image indices it consumed."""
    pipe = pipeline(root, args)
    weights, step = np.zeros(3, dtype=np.float64), 0
    latest = store.latest()
    if latest is not None:
        restored = store.restore()
        weights, step = restored.tensors["weights"], latest.step
        pipe.load_state_dict(restored.info.config["data"])
        print(f"resumed at step {step}")
    seen: list[int] = []
    with pipe:
        for batch in pipe:
            weights += 0.01 * batch["image"].mean(axis=(0, 2, 3))  # the "training step"
            seen.extend(int(i) for i in batch["index"])
            step += 1
            store.save(step, {"weights": weights}, config={"data": pipe.state_dict()})
            if stop_after is not None and step >= stop_after:
                print(f"stopped after step {step} (as a preempted job would)")
                break
        print(pipe.statistics())
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("ray", "dask"), default="ray")
    parser.add_argument("--address", default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--stop-after", type=int, default=3)
    parser.add_argument("--checkpoints", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        make_images(root, args.images)
        store = wt.Checkpoints(args.checkpoints or Path(tmp) / "checkpoints", keep_last=2)
        first = train(root, store, args, stop_after=args.stop_after)
        second = train(root, store, args, stop_after=None)
    together = sorted(first + second)
    exact = together == list(range(args.images))
    print(f"first run {len(first)} images, second run {len(second)}: "
          f"{'every image exactly once' if exact else 'NOT every image exactly once'}")
    if not exact:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
