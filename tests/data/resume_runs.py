"""Interrupted runs for the exact-resume tests of every source and stage."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from typing import Any

import weft.data as wd


def run_with_stops(make: Callable[[], wd.Pipeline], stops: list[int], *, roundtrip: str = "none") -> list[Any]:
    """Iterate, snapshot after each stop, rebuild the pipeline from the snapshot, continue.

    ``roundtrip`` passes each snapshot through ``"json"`` or ``"pickle"`` first, as a job
    that stores it in a checkpoint would; what comes back is every item in the order seen.
    """
    seen: list[Any] = []
    state: dict[str, Any] | None = None
    for stop in stops:
        pipe = make()
        if state is not None:
            pipe.load_state_dict(state)
        it = iter(pipe)
        for _ in range(stop):
            try:
                seen.append(next(it))
            except StopIteration:
                break
        state = pipe.state_dict()
        del it  # garbage collection stops the pass
        pipe.close()
        if roundtrip == "json":
            state = json.loads(json.dumps(state))
        elif roundtrip == "pickle":
            state = pickle.loads(pickle.dumps(state))
    pipe = make()
    if state is not None:
        pipe.load_state_dict(state)
    seen.extend(pipe)
    return seen
