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
    pipe.stats().verdict                     # which stage is the bottleneck, and what to try
    state = pipe.state_dict()                # exact resume: nothing repeated, nothing lost

torch interop lives in :mod:`weft.data.torch` (imported only when used).
"""

from __future__ import annotations

from weft.data._collate import default_collate, pad_collate, uncollate
from weft.data._from import (
    from_array,
    from_files,
    from_image_folder,
    from_iterable,
    from_jsonl,
    from_npy,
    from_range,
)
from weft.data._pipeline import Pipeline
from weft.data._progress import progress
from weft.data._stats import PipelineStats, StageStats

__all__ = [
    "Pipeline",
    "PipelineStats",
    "StageStats",
    "default_collate",
    "from_array",
    "from_files",
    "from_image_folder",
    "from_iterable",
    "from_jsonl",
    "from_npy",
    "from_range",
    "pad_collate",
    "progress",
    "uncollate",
]
