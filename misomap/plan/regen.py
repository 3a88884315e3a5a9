"""The regeneration's graph and input keys: which cube and map chunks a run over a plan has, what
each depends on, and the key that says when each must be recomputed.

Every cube chunk has an input key: a hash of the cube section, the grid and the ids and `updated`
times of the STAC items whose footprints touch the chunk. Every map chunk's key hashes the map run
(map section + model checkpoint digest) and the keys of the cube chunks its predictor reads (its
window plus halo). A chunk is rebuilt only when its key has no completion record.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from misomap.cube.build import overlapping, search_bbox
from misomap.cube.config import CubeConfig
from misomap.cube.grid import Grid
from misomap.cube.search import FoundItems
from misomap.plan.plan import RegionPlan, StageCost

Bounds = tuple[float, float, float, float]


def sha(obj: Any) -> str:
    """sha256 of `obj` as canonical JSON: every key and identity of a regeneration."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class DryRun:
    """The task graph and cost of a regeneration, computed without reading imagery."""

    plan: RegionPlan
    costs: list[StageCost]
    graph: dict[str, tuple[Any, ...]] = field(repr=False)

    @property
    def n_edges(self) -> int:
        return sum(len(t) - 1 for t in self.graph.values())


def overlap_keys(plan_grid: Grid, chunk: int, bounds: Bounds, planned: set[str]) -> list[str]:
    """Keys of the planned cube chunks whose area overlaps `bounds`."""
    r, (xmin, ymin, xmax, ymax) = plan_grid.resolution, bounds
    c0 = max(math.floor((xmin - plan_grid.xmin) / r / chunk + 1e-9), 0)
    c1 = math.ceil((xmax - plan_grid.xmin) / r / chunk - 1e-9)
    r0 = max(math.floor((plan_grid.ymax - ymax) / r / chunk + 1e-9), 0)
    r1 = math.ceil((plan_grid.ymax - ymin) / r / chunk - 1e-9)
    return [k for iy in range(r0, r1) for ix in range(c0, c1) if (k := f"{iy}.{ix}") in planned]


def _noop(*_: Any) -> None:
    """Stand-in task body of the dry-run graph."""


def task_graph(plan: RegionPlan) -> dict[str, tuple[Any, ...]]:
    """The regeneration as a dask graph: search → one task per cube chunk → one per map chunk (after
    the cube chunks under it) → publish. Dry runs and the scheduling bench use it."""
    planned = {w.key for w in plan.cube_chunks}
    graph: dict[str, tuple[Any, ...]] = {"search": (_noop,)}
    for w in plan.cube_chunks:
        graph[f"cube-{w.key}"] = (_noop, "search")
    for m in plan.map_chunks:
        sub = plan.map_grid.window(m.row0, m.col0, m.height, m.width)
        deps = overlap_keys(plan.grid, plan.cube_chunk, sub.bounds, planned)
        graph[f"predict-{m.key}"] = (_noop, *[f"cube-{k}" for k in deps])
    graph["publish"] = (_noop, *[f"predict-{m.key}" for m in plan.map_chunks])
    return graph


def _updated(item: Any) -> str:
    p = item.properties
    return str(p.get("updated") or p.get("created") or p.get("datetime") or "")


def cube_keys(cfg: CubeConfig, found: list[FoundItems], plan: RegionPlan) -> dict[str, str]:
    """Input key of every planned cube chunk: cube section, grid, and the touching items' ids and
    `updated` times."""
    ident = [cfg.model_dump(mode="json", exclude={"out", "workers"}), cfg.band_names(), plan.grid.to_dict()]
    keys = {}
    for w in plan.cube_chunks:
        bbox = search_bbox(plan.grid.window(w.row0, w.col0, w.height, w.width))
        items = sorted((f.source.collection, group, it.id, _updated(it))
                       for f in found for group, its in f.groups.items() for it in overlapping(its, bbox))
        keys[w.key] = sha([ident, w.key, items])[:24]
    return keys


def map_keys(plan: RegionPlan, ckeys: dict[str, str], rhash: str,
             reads: Callable[[Grid, Grid], Bounds]) -> dict[str, str]:
    """Input key of every map chunk: the map run and the keys of the cube chunks it reads
    (`reads(cube grid, chunk grid)`: the predictor's window with its halo)."""
    planned = set(ckeys)
    out = {}
    for m in plan.map_chunks:
        sub = plan.map_grid.window(m.row0, m.col0, m.height, m.width)
        keys = overlap_keys(plan.grid, plan.cube_chunk, reads(plan.grid, sub), planned)
        out[m.key] = sha([rhash, m.key, [(k, ckeys[k]) for k in keys]])[:24]
    return out


def records_digest(keys: dict[str, str]) -> str:
    """What a working store's complete mark vouches for: every chunk at its current input key."""
    return sha(sorted(f"{k}-{v}" for k, v in keys.items()))
