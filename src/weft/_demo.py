"""``weft demo``: load, train and serve a small image classifier, end to end, offline.

1. **Data**: draws a labelled dataset (circle / square / triangle on noise, 32x32 PNG
   files) and streams it through a ``weft.data`` pipeline (decode + augment map, batch,
   prefetch).
2. **Train**: a NumPy MLP, each step ``timed``; a checkpoint per epoch (background
   saves) and every metric in the ``Tracker``. Run it again and it resumes from its
   last checkpoint (``--epochs`` more than before continues training).
3. **Serve**: the trained model behind the weft V2 server on a background thread,
   queried by concurrent ``weft.serve.Client`` requests that the server batches.

Each phase says what ran, on which backend and why (from the components'
``statistics()``), its throughput and, at the end, the accuracy.
"""

from __future__ import annotations

import shutil
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

__all__ = ["DemoModel", "DemoSize", "load_example", "register", "run_demo"]

CLASSES = ("circle", "square", "triangle")
SIDE = 32


@dataclass(frozen=True, kw_only=True)
class DemoSize:
    train_per_class: int
    val_per_class: int
    epochs: int
    batch_size: int = 64
    hidden: int = 128
    requests: int = 600


SIZES = {"small": DemoSize(train_per_class=160, val_per_class=40, epochs=5, requests=120),
         "default": DemoSize(train_per_class=1500, val_per_class=300, epochs=8, requests=900)}


# -- phase 1: data -------------------------------------------------------------------
def draw(kind: int, rng: np.random.Generator) -> np.ndarray:
    """One 32x32 uint8 image of shape ``CLASSES[kind]`` at a random place and size, on noise."""
    y, x = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32)
    r = rng.uniform(6, 11)
    cx, cy = SIDE / 2 + rng.uniform(-4, 4, size=2)
    if kind == 0:
        mask = (x - cx) ** 2 + (y - cy) ** 2 <= r * r
    elif kind == 1:
        mask = (np.abs(x - cx) <= r * 0.85) & (np.abs(y - cy) <= r * 0.85)
    else:
        top = cy - r
        mask = (y >= top) & (y <= cy + r) & (np.abs(x - cx) <= (y - top) / 2)
    image = rng.normal(0.25, 0.12, size=(SIDE, SIDE))
    image[mask] = rng.uniform(0.65, 1.0)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def make_dataset(root: Path, size: DemoSize, seed: int = 0) -> dict[str, int]:
    """Write root/{train,val}/<class>/<n>.png unless they are already there."""
    from PIL import Image

    counts = {"train": size.train_per_class, "val": size.val_per_class}
    marker = root / "complete.txt"
    expected = f"{size.train_per_class} {size.val_per_class} {seed}"
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
    choice = zlib.crc32(path.encode())
    if choice & 1:
        pixels = pixels[:, ::-1]
    pixels = pixels + ((choice >> 1) % 11 - 5) * 0.01
    return np.ascontiguousarray(normalize(pixels).reshape(-1)), label


def load_plain(item: tuple[str, int]) -> tuple[np.ndarray, int]:
    """Decode one PNG without augmentation (validation)."""
    from PIL import Image

    path, label = item
    with Image.open(path) as image:
        return normalize(np.asarray(image, dtype=np.float32) / 255.0).reshape(-1), label


def normalize(pixels: np.ndarray) -> np.ndarray:
    """Centre and scale pixel values (about mean 0, unit spread for this dataset)."""
    return (pixels - 0.35) / 0.25


# -- phase 2: the model ---------------------------------------------------------------------
def init_params(hidden: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"w1": (rng.standard_normal((SIDE * SIDE, hidden)) * np.sqrt(2 / (SIDE * SIDE))).astype(np.float32),
            "b1": np.zeros(hidden, np.float32),
            "w2": (rng.standard_normal((hidden, len(CLASSES))) * np.sqrt(1 / hidden)).astype(np.float32),
            "b2": np.zeros(len(CLASSES), np.float32)}


def forward(params: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hidden activations, class probabilities)."""
    h = np.maximum(x @ params["w1"] + params["b1"], 0)
    logits = h @ params["w2"] + params["b2"]
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return h, e / e.sum(axis=1, keepdims=True)


def sgd_step(params: dict[str, np.ndarray], velocity: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray,
             lr: float, momentum: float = 0.9) -> tuple[float, float]:
    """One step of SGD with momentum on softmax cross-entropy; returns (loss, accuracy)."""
    h, p = forward(params, x)
    n = len(y)
    loss = float(-np.log(p[np.arange(n), y] + 1e-9).mean())
    acc = float((p.argmax(axis=1) == y).mean())
    d_logits = p
    d_logits[np.arange(n), y] -= 1
    d_logits /= n
    grads = {"w2": h.T @ d_logits, "b2": d_logits.sum(axis=0)}
    d_h = (d_logits @ params["w2"].T) * (h > 0)
    grads["w1"] = x.T @ d_h
    grads["b1"] = d_h.sum(axis=0)
    for k, g in grads.items():
        velocity[k] = momentum * velocity[k] - lr * g.astype(np.float32)
        params[k] += velocity[k]
    return loss, acc


class DemoModel:
    """The trained MLP as a weft.serve model: 1024 pixels in, 3 probabilities out."""

    name = "shapes"
    releases_gil = True   # NumPy matmuls release the GIL: threads serve it in parallel

    def __init__(self, checkpoints: str = "runs/demo/checkpoints") -> None:
        from weft.serve import TensorSpec

        self.checkpoints = checkpoints
        self.inputs = [TensorSpec("image", "FP32", [-1, SIDE * SIDE])]
        self.outputs = [TensorSpec("probs", "FP32", [-1, len(CLASSES)])]
        self.params: dict[str, np.ndarray] = {}

    def load(self) -> None:
        from weft.train import Checkpoints

        self.params = dict(Checkpoints(self.checkpoints).restore().tensors)

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        _, probs = forward(self.params, inputs["image"].astype(np.float32, copy=False))
        return {"probs": probs.astype(np.float32)}


# -- the run ----------------------------------------------------------------------------------
def run_demo(*, size: str = "default", epochs: int | None = None, workdir: str | Path = "runs/demo",
             fresh: bool = False, console: Any = None) -> dict[str, Any]:
    """Run the three phases and print a summary; returns the figures it printed."""
    from rich.console import Console

    import weft.data as wd
    import weft.train as wt
    from weft import runtime
    from weft.errors import ConfigError

    if size not in SIZES:
        raise ConfigError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    plan = SIZES[size]
    total_epochs = epochs or plan.epochs
    console = console or Console()
    root = Path(workdir)
    if fresh:
        shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    gil = runtime.gil_enabled()
    console.rule("[bold]weft demo: load, train, serve")
    console.print(f"interpreter: Python {'.'.join(map(str, __import__('sys').version_info[:3]))}, "
                  f"free-threaded build: {runtime.is_free_threaded_build()}, GIL on: {gil}, "
                  f"usable cores: {runtime.usable_cores()}; work directory {root}")
    summary: dict[str, Any] = {"gil": gil}

    # phase 1 -- data
    started = time.perf_counter()
    counts = make_dataset(root / "data", plan)
    summary["dataset_seconds"] = time.perf_counter() - started
    train_pipe = (wd.from_image_folder(root / "data" / "train").shuffle(buffer=2048, seed=0)
                  .map(load_example, workers=2, name="decode+augment").batch(plan.batch_size).prefetch(4))
    val_pipe = wd.from_image_folder(root / "data" / "val").map(load_plain, workers=2, name="decode").batch(256)

    # phase 2 -- train (resuming from the last checkpoint if there is one)
    ckpt = wt.Checkpoints(root / "checkpoints", keep_last=2, keep_best=1, metric="val_acc", mode="max",
                          background=True)
    tracker = wt.Tracker(root / "weft.db")
    latest = ckpt.latest()
    if latest is not None:
        restored = ckpt.restore()
        params = dict(restored.tensors)
        velocity = {k: v for k, v in params.items() if k.startswith("v.")}
        params = {k: v for k, v in params.items() if not k.startswith("v.")}
        velocity = {k[2:]: v for k, v in velocity.items()}
        start_epoch = int(restored.config["epoch"]) + 1
        run = tracker.resume_run(str(restored.config["run_id"]))
        console.print(f"[yellow]resuming[/] from checkpoint step {restored.step} (epoch {start_epoch} of "
                      f"{total_epochs}), tracker run {run.id}")
    else:
        params = init_params(plan.hidden)
        velocity = {k: np.zeros_like(v) for k, v in params.items()}
        start_epoch = 0
        run = tracker.start_run("demo", params={"size": size, "hidden": plan.hidden, "lr": 0.05,
                                                "batch_size": plan.batch_size})
    summary.update(resumed_from_epoch=start_epoch if latest is not None else None, run_id=run.id)
    step_timer = wt.timed("weft.demo.train_step")
    step_timer.reset()
    step = start_epoch * -(-counts["train"] // plan.batch_size)
    images = 0
    val_acc = float("nan")
    train_started = time.perf_counter()
    for epoch in range(start_epoch, total_epochs):
        train_pipe.set_epoch(epoch)
        lr = 0.05 * (0.85 ** epoch)
        for x, y in train_pipe:
            with step_timer:
                loss, acc = sgd_step(params, velocity, x, y, lr)
            run.log({"loss": loss, "train_acc": acc}, step=step)
            step += 1
            images += len(y)
        val_acc = evaluate(params, val_pipe)
        run.log({"val_acc": val_acc, "epoch": epoch}, step=step)
        state = {**params, **{f"v.{k}": v for k, v in velocity.items()}}
        ckpt.save(step, state, metrics={"val_acc": val_acc, "loss": loss},
                  config={"epoch": epoch, "run_id": run.id, "size": size})
        console.print(f"  epoch {epoch + 1}/{total_epochs}: loss {loss:.3f}, val accuracy {val_acc:.1%}")
    ckpt.wait()
    train_seconds = time.perf_counter() - train_started
    if start_epoch >= total_epochs:
        console.print(f"[yellow]already trained[/] {total_epochs} epochs (pass --epochs N to train more, "
                      "--fresh to start over)")
        val_acc = evaluate(params, val_pipe)
    run.finish("finished")
    data_stats = train_pipe.statistics() if images else None
    summary.update(train_images=images, train_seconds=train_seconds, val_acc=val_acc,
                   step_stats=step_timer.statistics(), ckpt_stats=ckpt.statistics())
    ckpt.close()
    tracker.close()
    print_data(console, counts, summary, data_stats)
    print_train(console, summary, root)

    # phase 3 -- serve
    served = serve_and_query(root, val_pipe, plan.requests)
    summary.update(served)
    print_serve(console, served)
    console.rule(f"[bold]final accuracy: {val_acc:.1%} (validation), {served['served_acc']:.1%} "
                 f"(served predictions)")
    return summary


def evaluate(params: dict[str, np.ndarray], val_pipe: Any) -> float:
    correct = total = 0
    for x, y in val_pipe:
        _, p = forward(params, x)
        correct += int((p.argmax(axis=1) == y).sum())
        total += len(y)
    return correct / max(total, 1)


def serve_and_query(root: Path, val_pipe: Any, requests: int) -> dict[str, Any]:
    """Serve the best checkpoint's model; send ``requests`` single-image V2 requests from 8 threads."""
    import weft.exec
    from weft.serve import Client, Server, ServerConfig

    xs, ys = [], []
    for x, y in val_pipe:
        xs.append(x)
        ys.append(y)
    images, labels = np.concatenate(xs), np.concatenate(ys)
    picks = np.arange(requests) % len(images)
    server = Server([DemoModel(str(root / "checkpoints"))],
                    ServerConfig(port=0, max_batch_size=32, max_delay_ms=2.0, workers=2))
    url = server.start()
    local = threading.local()

    def ask(i: int) -> int:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = Client(url)
            clients.append(client)
        probs = client.infer("shapes", {"image": images[i:i + 1]})["probs"]
        return int(probs.argmax(axis=1)[0])

    clients: list[Any] = []
    try:
        started = time.perf_counter()
        with weft.exec.create("thread", workers=8) as pool:
            predictions = list(pool.map(ask, picks.tolist(), max_in_flight=16))
        seconds = time.perf_counter() - started
        stats = server.statistics()
    finally:
        for client in clients:
            client.close()
        server.stop()
    batcher = stats.models["shapes"]
    return {"url": url, "requests": requests, "serve_seconds": seconds, "requests_per_s": requests / seconds,
            "served_acc": float((np.array(predictions) == labels[picks]).mean()),
            "serve_backend": stats.backend, "serve_reason": stats.backend_reason,
            "batches": batcher.batches, "mean_batch_rows": batcher.mean_batch_rows,
            "failed": batcher.failed}


# -- printing -----------------------------------------------------------------------------------
def _table(title: str) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_header=True, header_style="bold")
    table.add_column("what")
    table.add_column("figure")
    return table


def print_data(console: Any, counts: dict[str, int], summary: dict[str, Any], stats: Any) -> None:
    table = _table("1. data: weft.data pipeline (statistics of the last epoch)")
    table.add_row("dataset", f"{counts['train']} train + {counts['val']} validation PNGs, 3 classes "
                             f"({summary['dataset_seconds']:.1f} s to draw or find)")
    if stats is None:
        table.add_row("pipeline", "not run (nothing left to train)")
    else:
        for stage in stats.stages:
            how = stage.backend + (f" x{stage.workers}" if stage.workers > 1 else "")
            table.add_row(f"stage {stage.index} {stage.name}",
                          f"{stage.items} items, {stage.items_per_second:,.0f}/s, {how}: {stage.reason}")
        table.add_row("verdict", stats.verdict)
    console.print(table)


def print_train(console: Any, summary: dict[str, Any], root: Path) -> None:
    table = _table("2. train: NumPy MLP with weft.train")
    steps, ck = summary["step_stats"], summary["ckpt_stats"]
    if summary["train_images"]:
        table.add_row("throughput", f"{summary['train_images'] / summary['train_seconds']:,.0f} images/s over "
                                    f"{summary['train_seconds']:.1f} s (data + steps + logging)")
        table.add_row("train step (timed)", f"{steps.count} steps, mean {steps.mean * 1e3:.2f} ms, "
                                            f"p95 {steps.p95 * 1e3:.2f} ms, max {steps.max * 1e3:.2f} ms")
    if summary["resumed_from_epoch"] is not None:
        table.add_row("resumed", f"from the checkpoint of epoch {summary['resumed_from_epoch']}")
    table.add_row("checkpoints", f"{ck.saves} saved in the background on a weft thread "
                                 f"(step blocked {ck.blocked_seconds * 1e3:.1f} ms in total for the copies, "
                                 f"writes took {ck.save_seconds * 1e3:.1f} ms), safetensors in {root / 'checkpoints'}")
    table.add_row("tracker", f"run {summary['run_id']} in {root / 'weft.db'}: "
                             f"weft runs show {summary['run_id']} --db {root / 'weft.db'}")
    table.add_row("validation accuracy", f"{summary['val_acc']:.1%}")
    console.print(table)


def print_serve(console: Any, served: dict[str, Any]) -> None:
    table = _table("3. serve: weft.serve V2 server, weft.serve.Client")
    table.add_row("server", f"{served['url']}, model 'shapes', backend {served['serve_backend']}: "
                            f"{served['serve_reason']}")
    table.add_row("throughput", f"{served['requests']} single-image requests from 8 client threads in "
                                f"{served['serve_seconds']:.2f} s = {served['requests_per_s']:,.0f} requests/s")
    table.add_row("dynamic batching", f"{served['batches']} batches, {served['mean_batch_rows']:.1f} images "
                                      f"per batch on average, {served['failed']} failed")
    table.add_row("served accuracy", f"{served['served_acc']:.1%}")
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add ``weft demo`` to the ``weft`` command."""

    @app.command()
    def demo(
        small: Annotated[bool, typer.Option("--small", help="A tiny dataset and 5 epochs (seconds, for CI).")] = False,
        size: Annotated[str, typer.Option(help="Dataset size: 'small' or 'default'.")] = "default",
        epochs: Annotated[int | None, typer.Option(help="Train up to this many epochs (resumes if more).")] = None,
        directory: Annotated[Path, typer.Option("--dir", help="Work directory (data, checkpoints, runs).")] = Path(
            "runs/demo"),
        fresh: Annotated[bool, typer.Option(help="Delete the work directory first.")] = False,
    ) -> None:
        """Load, train and serve a small image classifier end to end (offline, CPU only)."""
        run_demo(size="small" if small else size, epochs=epochs, workdir=directory, fresh=fresh)
