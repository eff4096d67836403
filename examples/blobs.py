"""The data both training examples learn from, and the augmentation their pipelines run.

Three noisy blobs of FEATURES features in a Parquet file of several row groups; the
augmentation adds noise drawn from each row's own bytes, so a resumed run sees exactly
the batches an uninterrupted one would. Used by ``train_numpy.py`` and ``train_torch.py``.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

FEATURES, CLASSES = 16, 3
ROWS = 600


def make_data(path: Path, seed: int = 0) -> Path:
    """ROWS rows of FEATURES features and a class label: three noisy blobs, written as a
    Parquet file of several row groups (``x``: a fixed-size list column, ``label``)."""
    if not path.exists():
        import pyarrow as pa
        import pyarrow.parquet as pq

        rng = np.random.default_rng(seed)
        labels = rng.integers(0, CLASSES, ROWS)
        centres = rng.normal(0, 0.5, (CLASSES, FEATURES))
        x = (centres[labels] + rng.normal(0, 1.5, (ROWS, FEATURES))).astype(np.float32)
        table = pa.table({"x": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), FEATURES),
                          "label": pa.array(labels.astype(np.int64))})
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, row_group_size=ROWS // 6)
    return path


def augment(row: dict[str, np.ndarray]) -> tuple[np.ndarray, int]:
    """Features with a little noise, drawn from the row's own bytes: the same noise
    whichever worker thread runs it, so the run is reproducible."""
    rng = np.random.default_rng(zlib.crc32(row["x"].tobytes()))
    x = row["x"] + rng.normal(0, 0.1, FEATURES).astype(np.float32)
    return x, int(row["label"])
