"""Serve the NumPy MLP in a background thread, call it from 16 client threads, and
check every answer against the model run directly.

    python examples/serve_client.py
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np

import weft.serve

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import mlp  # noqa: E402


def main() -> None:
    config = weft.serve.ServerConfig(port=0, max_batch_size=32, max_delay=0.005, workers=2)
    server = weft.serve.Server([f"{HERE / 'mlp.py'}:Model"], config)
    with server:
        rng = np.random.default_rng(0)
        xs = [rng.standard_normal((1, 512)).astype(np.float32) for _ in range(64)]
        answers: dict[int, np.ndarray] = {}

        def client(ids: range) -> None:
            with weft.serve.Client(server.url) as c:
                for i in ids:
                    answers[i] = c.infer("mlp", {"x": xs[i]})["y"]

        threads = [threading.Thread(target=client, args=(range(k, 64, 16),)) for k in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = server.statistics()
    worst = max(float(np.abs(answers[i] - mlp.forward(xs[i])).max()) for i in range(64))
    batcher = stats.models["mlp"]
    print(f"served {batcher.completed} requests in {batcher.batches} batches "
          f"(mean {batcher.mean_batch_rows:.1f} rows) on {stats.backend} workers: {stats.backend_reason}")
    print(f"largest difference from the model run directly: {worst:.2e}")
    assert worst < 1e-4


if __name__ == "__main__":
    main()
