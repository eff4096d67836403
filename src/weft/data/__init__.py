"""weft.data (Load): a streaming data pipeline that feeds training loops.

Sources, then stages, then a ``for`` loop::

    import weft.data as wd

    pipe = (wd.from_files("images/*.jpg")
            .shuffle(seed=0)
            .map(decode, workers=8)          # threads or processes, chosen by measuring
            .batch(32)
            .prefetch(4))
    for batch in pipe:
        ...
    pipe.statistics().verdict                # which stage is the bottleneck, and what to try
    state = pipe.state_dict()                # exact resume: nothing repeated, nothing lost

Tables and corpora at scale: ``from_parquet`` (Hive partitions, projection, filters;
needs ``weft[arrow]``) and ``from_webdataset`` (tar shards), both sharded and shuffled
by row group or shard and resumed by seeking.

torch interop lives in :mod:`weft.data.torch` (imported only when used).
"""

from __future__ import annotations

import warnings
from typing import Any

from weft.data._collate import default_collate, pad_collate, uncollate
from weft.data._from import (
    from_array,
    from_files,
    from_image_folder,
    from_iterable,
    from_jsonl,
    from_npy,
    from_parquet,
    from_range,
    from_webdataset,
)
from weft.data._pipeline import Pipeline
from weft.data._progress import progress
from weft.data._stats import PipelineStatistics, StageStatistics

__all__ = [
    "Pipeline",
    "PipelineStatistics",
    "StageStatistics",
    "default_collate",
    "from_array",
    "from_files",
    "from_image_folder",
    "from_iterable",
    "from_jsonl",
    "from_npy",
    "from_parquet",
    "from_range",
    "from_webdataset",
    "pad_collate",
    "progress",
    "uncollate",
]

# Names of the previous release, kept one more release: importing one warns.
_RENAMED = {"PipelineStats": "PipelineStatistics", "StageStats": "StageStatistics"}


def __getattr__(name: str) -> Any:
    if name in _RENAMED:
        new = _RENAMED[name]
        warnings.warn(f"weft.data.{name} is deprecated and will be removed in the next release: "
                      f"use weft.data.{new}", DeprecationWarning, stacklevel=2)
        return globals()[new]
    raise AttributeError(f"module 'weft.data' has no attribute {name!r}")
