"""Train a small torch classifier from a weft pipeline; a killed run resumes exactly.

    python examples/train_torch.py --dir runs/torch --steps 400           # trains, checkpointing every 25 steps
    python examples/train_torch.py --dir runs/torch --steps 400 --resume  # after a kill: continues at the next step

The pipeline reads a Parquet file (row groups permuted and rows buffer-shuffled anew
each epoch), augments
them on two threads, batches and prefetches. Every ``--every`` steps ONE atomic
checkpoint is written in the background with the model's and the optimizer's
``state_dict()``, the pipeline's position (mid-epoch included) and the random
generators' states (torch's draws the dropout masks). Losses go to the experiment
tracker. A resumed run sees the same batches and masks as an uninterrupted one: its
final weights are bit-identical, and the tracker holds one loss curve, each step once.
(``examples/train_numpy.py`` is the same job without torch, for free-threaded Python.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import weft.data as wd
import weft.train as wt
from blobs import CLASSES, FEATURES, augment, make_data

HIDDEN = 32


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path("runs/train_torch"))
    parser.add_argument("--steps", type=int, default=400, help="train until this step")
    parser.add_argument("--every", type=int, default=25, help="checkpoint every N steps")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint, if any")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    model = torch.nn.Sequential(torch.nn.Linear(FEATURES, HIDDEN), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                                torch.nn.Linear(HIDDEN, CLASSES))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    data = make_data(args.dir / "data" / "train.parquet", args.seed)
    pipe = (wd.from_parquet(data).shuffle(buffer=128, seed=args.seed)       # row groups permuted, rows buffer-shuffled, per epoch
            .map(augment, workers=2, backend="thread", name="augment")       # NumPy releases the GIL
            .batch(args.batch).prefetch(4)
            .epochs(None))                                                   # one pass over every epoch
    tracker = wt.Tracker(args.dir / "weft.db")
    with wt.Checkpoints(args.dir / "checkpoints", keep_last=2, background=True) as ckpt:
        if ckpt.latest() is not None and not args.resume:
            raise SystemExit(f"{args.dir} holds checkpoints: pass --resume to continue, or use another --dir")
        if ckpt.latest() is not None:
            restored = ckpt.restore(framework="torch")  # torch tensors back (bfloat16 too)
            model.load_state_dict(restored.state["model"])
            opt.load_state_dict(restored.state["opt"])
            pipe.load_state_dict(restored.data)         # the next batch is the one after the checkpoint
            restored.restore_rng()                      # and so are the dropout masks
            step = restored.step
            run = tracker.resume_run(restored.config["run_id"])
            series = tracker.metric(run.id, "loss")
            logged = int(series.steps.max()) if len(series.steps) else 0   # a killed run may have logged past
            print(f"resumed at step {step} (run {run.id})")
        else:
            step = logged = 0
            run = tracker.start_run("train_torch", params=vars(args) | {"dir": str(args.dir)})
            # step 0 is saved at once, so a run killed before its first checkpoint resumes this tracker run
            ckpt.save(0, {"model": model.state_dict(), "opt": opt.state_dict()}, data=pipe.state_dict(), rng=True,
                      config={"run_id": run.id}, background=False)
        model.train()
        loss = torch.tensor(float("nan"))
        if step < args.steps:
            for x, y in pipe:
                step += 1
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
                loss.backward()
                opt.step()
                if step > logged:
                    run.log({"loss": loss.item()}, step=step)
                if step % args.every == 0 or step == args.steps:
                    # copied when save() returns; written on a background thread while training goes on
                    ckpt.save(step, {"model": model.state_dict(), "opt": opt.state_dict()},
                              data=pipe.state_dict(), rng=True, metrics={"loss": loss.item()},
                              config={"run_id": run.id})
                if step == args.steps:
                    break
            pipe.close()
    run.finish("finished")
    tracker.close()
    print(f"step {step}: loss {loss.item():.4f}; checkpoints in {args.dir / 'checkpoints'}")


if __name__ == "__main__":
    main()
