"""``shard("auto")``: this process's rank and the world size, from whoever launched it.

Asked in order, the first that knows answers:

1. ``torch.distributed``, when this process initialised a process group;
2. Ray Train's context, inside a Ray Train worker;
3. the ``RANK`` and ``WORLD_SIZE`` environment variables (set by ``torchrun``, Ray
   Train's torch backend, Lightning, DeepSpeed, ...);
4. nobody: one process, rank 0 of 1 (the whole source).

Every rank of a job must build the same pipeline (the same source and shuffle seed):
each then keeps item ``i`` when ``i % world_size == rank``, so the shares are disjoint
and together hold every item once per epoch.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import NamedTuple

from weft.errors import ConfigError

__all__ = ["Placement", "auto_placement"]

log = logging.getLogger(__name__)


class Placement(NamedTuple):
    """This process's rank among ``world_size``, and who said so."""

    rank: int
    world_size: int
    source: str


def _from_torch() -> Placement | None:
    dist = sys.modules.get("torch.distributed")  # initialised only if imported: never import torch here
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return None
    return Placement(int(dist.get_rank()), int(dist.get_world_size()), "torch.distributed")


def _from_ray_train() -> Placement | None:
    if "ray.train" not in sys.modules:  # a Ray Train worker's function has imported it
        return None
    train = sys.modules["ray.train"]
    try:
        context = train.get_context()
        rank, world = context.get_world_rank(), context.get_world_size()
    except Exception:  # outside a Ray Train worker the context has no session
        log.debug("weft: no Ray Train context in this process", exc_info=True)
        return None
    if rank is None or world is None:
        return None
    return Placement(int(rank), int(world), "Ray Train's context")


def _from_environment() -> Placement | None:
    rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
    if rank is None and world is None:
        return None
    if rank is None or world is None:
        raise ConfigError(f"shard('auto'): RANK={rank!r} and WORLD_SIZE={world!r} are set one without the other: "
                          "set both, or pass shard(rank, world_size)")
    try:
        return Placement(int(rank), int(world), "RANK/WORLD_SIZE")
    except ValueError:
        raise ConfigError(f"shard('auto'): RANK={rank!r} and WORLD_SIZE={world!r} must be integers") from None


def auto_placement() -> Placement:
    """Where this process sits in its job; see the module docstring for who is asked."""
    placement = _from_torch() or _from_ray_train() or _from_environment()
    if placement is None:
        placement = Placement(0, 1, "nothing (no process group, Ray Train context or RANK/WORLD_SIZE)")
    if not 0 <= placement.rank < placement.world_size:
        raise ConfigError(f"shard('auto'): {placement.source} gives rank {placement.rank} of world size "
                          f"{placement.world_size}; a rank must be in [0, world_size)")
    log.info("weft: shard('auto') is rank %d of %d, from %s", placement.rank, placement.world_size,
             placement.source)
    return placement
