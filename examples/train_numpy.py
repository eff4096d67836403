"""Train a small NumPy classifier from a weft pipeline; a killed run resumes exactly.

    python examples/train_numpy.py --dir runs/numpy --steps 400          # trains, checkpointing every 25 steps
    python examples/train_numpy.py --dir runs/numpy --steps 400 --resume # after a kill: continues at the next step

The job's whole state goes into one atomic checkpoint every ``--every`` steps, in the
background: the weights and the optimizer's velocities, the pipeline's position
(mid-epoch included), and the random generator that draws the dropout masks. A resumed
run sees the same batches and draws the same masks as an uninterrupted one, so its
final weights are bit-identical and the tracker holds one loss curve, each step once.
NumPy only: it runs on free-threaded Python too (``examples/train_torch.py`` is the
torch version).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

import weft.data as wd
import weft.train as wt
from blobs import CLASSES, FEATURES, augment, make_data

HIDDEN = 32
DROPOUT = 0.2
MOMENTUM = 0.9


def init_params(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"w1": (rng.standard_normal((FEATURES, HIDDEN)) * np.sqrt(2 / FEATURES)).astype(np.float32),
            "b1": np.zeros(HIDDEN, np.float32),
            "w2": (rng.standard_normal((HIDDEN, CLASSES)) * np.sqrt(1 / HIDDEN)).astype(np.float32),
            "b2": np.zeros(CLASSES, np.float32)}


def train_step(params: dict[str, np.ndarray], velocity: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray,
               lr: float, dropout_rng: np.random.Generator) -> float:
    """One SGD-with-momentum step on softmax cross-entropy, with dropout on the hidden layer."""
    keep = (dropout_rng.random((len(x), HIDDEN)) >= DROPOUT).astype(np.float32) / (1 - DROPOUT)
    h = np.maximum(x @ params["w1"] + params["b1"], 0) * keep
    logits = h @ params["w2"] + params["b2"]
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    loss = float(-np.log(p[np.arange(len(y)), y] + 1e-9).mean())
    d = p
    d[np.arange(len(y)), y] -= 1
    d /= len(y)
    grads = {"w2": h.T @ d, "b2": d.sum(axis=0)}
    dh = (d @ params["w2"].T) * keep * (h > 0)
    grads["w1"], grads["b1"] = x.T @ dh, dh.sum(axis=0)
    for k, g in grads.items():
        velocity[k] = MOMENTUM * velocity[k] - lr * g.astype(np.float32)
        params[k] += velocity[k]
    return loss


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path("runs/train_numpy"))
    parser.add_argument("--steps", type=int, default=400, help="train until this step")
    parser.add_argument("--every", type=int, default=25, help="checkpoint every N steps")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint, if any")
    args = parser.parse_args(argv)

    data = make_data(args.dir / "data" / "train.parquet", args.seed)
    pipe = (wd.from_parquet(data).shuffle(buffer=128, seed=args.seed)       # row groups permuted, rows buffer-shuffled, per epoch
            .map(augment, workers=2, backend="thread", name="augment")       # NumPy releases the GIL
            .batch(args.batch).prefetch(4)
            .epochs(None))                                                   # one pass over every epoch
    dropout_rng = np.random.default_rng(args.seed + 1)
    tracker = wt.Tracker(args.dir / "weft.db")
    with wt.Checkpoints(args.dir / "checkpoints", keep_last=2, background=True) as ckpt:
        if ckpt.latest() is not None and not args.resume:
            raise SystemExit(f"{args.dir} holds checkpoints: pass --resume to continue, or use another --dir")
        if ckpt.latest() is not None:
            restored = ckpt.restore()
            params, velocity = restored.state["model"], restored.state["velocity"]
            pipe.load_state_dict(restored.data)         # the next batch is the one after the checkpoint
            restored.restore_rng(dropout_rng)           # and so are the dropout masks
            step = restored.step
            run = tracker.resume_run(restored.config["run_id"])
            series = tracker.metric(run.id, "loss")
            logged = int(series.steps.max()) if len(series.steps) else 0   # a killed run may have logged past
            print(f"resumed at step {step} (run {run.id})")
        else:
            params = init_params(args.seed)
            velocity = {k: np.zeros_like(v) for k, v in params.items()}
            step = logged = 0
            run = tracker.start_run("train_numpy", params=vars(args) | {"dir": str(args.dir)})
            # step 0 is saved at once, so a run killed before its first checkpoint resumes this tracker run
            ckpt.save(0, {"model": params, "velocity": velocity}, data=pipe.state_dict(), rng=dropout_rng,
                      config={"run_id": run.id}, background=False)
        loss = float("nan")
        if step < args.steps:
            for x, y in pipe:
                step += 1
                loss = train_step(params, velocity, x, y, args.lr, dropout_rng)
                if step > logged:
                    run.log({"loss": loss}, step=step)
                if step % args.every == 0 or step == args.steps:
                    job: dict[str, Any] = {"model": params, "velocity": velocity}
                    ckpt.save(step, job, data=pipe.state_dict(), rng=dropout_rng,
                              metrics={"loss": loss}, config={"run_id": run.id})
                if step == args.steps:
                    break
            pipe.close()
    run.finish("finished")
    tracker.close()
    print(f"step {step}: loss {loss:.4f}; checkpoints in {args.dir / 'checkpoints'}")


if __name__ == "__main__":
    main()
