"""The chunk engine on its own: skip-done, per-chunk records with the task's checksum, failures
named by chunk key, unexpected errors raised as they are, a store of another run refused, and
region writes that must be chunk-aligned."""

from __future__ import annotations

import hashlib
import itertools
import threading
import time

import numpy as np
import pytest
import zarr

from misomap.core.errors import MisomapError
from misomap.core.storage import Target
from misomap.runtime.cluster import task_resources
from misomap.runtime.records import CompletionRecords
from misomap.runtime.runner import Executor, StagedTask, row_chunks, run_plan
from misomap.runtime.zarr_io import claim, write_region

THREADS = Executor(2, threads=True)


class InjectedError(MisomapError):
    """A chunk failure the test asks for."""


def _store(path: str, rows: int = 10, size: int = 4) -> Target:
    group = zarr.open_group(path, mode="w")
    group.create_array("v", shape=(rows,), chunks=(size,), dtype="float32", fill_value=np.nan)
    return Target(path)


def write_rows(chunk, spec):
    """Toy chunk task: rows start..stop get their own index; chunks named in spec['fail'] raise."""
    path, fail, unexpected = spec
    if chunk.index in fail:
        raise InjectedError(f"rows {chunk.start}..{chunk.stop} are bad")
    if chunk.index in unexpected:
        raise RuntimeError("a bug, not a bad input")
    values = np.arange(chunk.start, chunk.stop, dtype=np.float32)
    write_region(Target(path), {"v": values}, slice(chunk.start, chunk.stop))
    return {"rows": [chunk.start, chunk.stop], "sha256": hashlib.sha256(values.tobytes()).hexdigest()}


def test_failures_name_their_chunk_and_a_rerun_runs_only_those(tmp_path):
    store = _store(str(tmp_path / "s.zarr"))
    records = CompletionRecords(Target(str(tmp_path / "s.zarr.progress")))
    plan = row_chunks(10, 4)
    first = run_plan(plan, write_rows, (store.url, {1}, set()), records, THREADS, name="t",
                     expected=(InjectedError,))
    assert [f.key for f in first.failures] == ["chunk-000001"] and "rows 4..8 are bad" in first.failures[0].message
    assert records.done() == {"chunk-000000", "chunk-000002"}
    assert records.record("chunk-000002")["rows"] == [8, 10]
    again = run_plan(plan, write_rows, (store.url, set(), set()), records, THREADS, name="t")
    assert again.ran == 1 and again.skipped == 2 and not again.failures
    np.testing.assert_array_equal(zarr.open_group(store.url)["v"][:], np.arange(10, dtype=np.float32))
    digest = records.digest()
    records.mark("chunk-000000", {"rows": [0, 4], "sha256": "changed"})
    assert records.digest() != digest


def test_an_unexpected_error_is_raised_as_it_is(tmp_path):
    store = _store(str(tmp_path / "s.zarr"))
    records = CompletionRecords(Target(str(tmp_path / "p")))
    with pytest.raises(RuntimeError, match="a bug"):
        run_plan(row_chunks(10, 4), write_rows, (store.url, set(), {0}), records, THREADS, name="t",
                 expected=(InjectedError,))


def test_records_of_another_fingerprint_never_count(tmp_path):
    mine = CompletionRecords(Target(str(tmp_path / "p")), "aaaa")
    CompletionRecords(Target(str(tmp_path / "p")), "bbbb").mark("0.0", {"sha256": "x"})
    mine.mark("0.1", {"sha256": "y"})
    assert mine.done() == {"0.1"} and mine.record("0.0") is None


def test_a_store_of_another_run_is_refused_naming_it(tmp_path):
    target = Target(str(tmp_path / "s.zarr"))
    assert claim(target, None, "run-a", "a map", InjectedError)
    assert not claim(target, "run-a", "run-a", "a map", InjectedError)
    with pytest.raises(InjectedError, match=r"s\.zarr holds a map made by another run"):
        claim(target, "run-b", "run-a", "a map", InjectedError)


def test_resuming_its_own_store_removes_what_a_killed_write_left(tmp_path):
    """zarr writes a local file under a temporary name, then renames it: a run killed in between
    leaves `<chunk>.<uuid>.partial`. Resuming the store removes those (and only those), so the
    rerun ends byte-identical to a clean run; another run's store is left untouched."""
    store = tmp_path / "s.zarr"
    (store / "data" / "c" / "2").mkdir(parents=True)
    left = store / "data" / "c" / "2" / f"0.{'ab' * 16}.partial"
    keep = [store / "data" / "c" / "2" / "0", store / "data" / "notes.partial", store / "zarr.json"]
    for path in [left, *keep]:
        path.write_bytes(b"x")
    with pytest.raises(InjectedError):
        claim(Target(str(store)), "run-b", "run-a", "a map", InjectedError)
    assert left.exists(), "another run's store is never touched"
    assert not claim(Target(str(store)), "run-a", "run-a", "a map", InjectedError)
    assert not left.exists() and all(p.exists() for p in keep)


def test_region_writes_must_be_chunk_aligned(tmp_path):
    store = _store(str(tmp_path / "s.zarr"))
    with pytest.raises(ValueError, match="not aligned"):
        write_region(store, {"v": np.zeros(4, np.float32)}, slice(2, 6))


EVENTS: list[tuple[str, int, float]] = []
_EVENTS_LOCK = threading.Lock()


def _event(stage: str, chunk) -> None:
    with _EVENTS_LOCK:
        EVENTS.append((stage, chunk.index, time.perf_counter()))


def _read(chunk, spec):
    _event("read", chunk)
    time.sleep(0.05)
    _event("read-end", chunk)
    return np.arange(chunk.start, chunk.stop, dtype=np.float32)


def _compute(chunk, spec, values):
    _event("compute", chunk)
    time.sleep(0.2)
    _event("compute-end", chunk)
    return values * 2


def _write(chunk, spec, values):
    write_region(Target(spec), {"v": values}, slice(chunk.start, chunk.stop))
    return {"sha256": hashlib.sha256(values.tobytes()).hexdigest()}


STAGED = StagedTask(_read, _compute, _write)


def _spans(stage: str) -> list[tuple[float, float]]:
    starts = {i: t for s, i, t in EVENTS if s == stage}
    ends = {i: t for s, i, t in EVENTS if s == f"{stage}-end"}
    return sorted((starts[i], ends[i]) for i in starts)


def test_overlap_reads_the_next_chunk_while_one_computes_and_computes_one_at_a_time(tmp_path):
    """With overlap, a worker's spare thread reads chunks while another computes; computes never
    run two at a time in one worker; the stored values equal the plain three-stage run's."""
    results = {}
    for overlap in (False, True):
        EVENTS.clear()
        store = _store(str(tmp_path / f"s{overlap}.zarr"), rows=24)
        records = CompletionRecords(Target(str(tmp_path / f"p{overlap}")))
        run_plan(row_chunks(24, 4), STAGED, store.url, records, Executor(1, threads=True, overlap=overlap), name="t")
        results[overlap] = zarr.open_group(store.url)["v"][:]
        computes, reads = _spans("compute"), _spans("read")
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(computes)), "one compute at a time"
        inside = sum(any(c0 < r0 < c1 for c0, c1 in computes) for r0, _ in reads)
        assert (inside >= 3) if overlap else inside == 0
    np.testing.assert_array_equal(results[True], np.arange(24, dtype=np.float32) * 2)
    np.testing.assert_array_equal(results[True], results[False])
    assert STAGED(row_chunks(24, 4)[1], str(tmp_path / "sTrue.zarr"))["sha256"] == \
        records.record("chunk-000001")["sha256"]


def test_gpu_tasks_ask_for_a_share_of_the_worker_gpu():
    """A GPU worker offers GPU=1; with overlap its two threads each hold a chunk (GPU 0.5 each),
    without it one; CPU jobs and in-process threads ask for nothing."""
    assert task_resources(True, True) == {"GPU": 0.5}
    assert task_resources(True, False) == {"GPU": 1.0}
    assert task_resources(False, True) is None and task_resources(True, True, threads=True) is None


def test_gpu_job_without_dask_cuda_runs_on_local_workers_offering_a_gpu_resource(tmp_path):
    """Without dask-cuda (or a GPU) a GPU job falls back to local worker processes that still
    offer the GPU resource its tasks ask for, so it runs instead of waiting forever."""
    store = _store(str(tmp_path / "g.zarr"), rows=8)
    records = CompletionRecords(Target(str(tmp_path / "pg")))
    report = run_plan(row_chunks(8, 4), STAGED, store.url, records, Executor(1, overlap=True, gpu=True), name="g")
    assert report.ran == 2 and not report.failures
    np.testing.assert_array_equal(zarr.open_group(store.url)["v"][:], np.arange(8, dtype=np.float32) * 2)


def test_helm_gpu_profile_offers_the_gpu_resource_map_tasks_ask_for():
    """The dask-gateway values' `gpu` profile: one GPU per worker pod, offered to dask as resource
    `GPU` = 1, and the two threads an overlapped GPU task share (task_resources)."""
    import types

    import yaml

    from misomap.runtime.cluster import GPU_PROFILE, worker_threads
    from tests.support import ROOT

    values = yaml.safe_load((ROOT / "infra" / "dask-gateway-values.yaml").read_text())
    scope: dict = {"c": types.SimpleNamespace(Backend=types.SimpleNamespace())}
    exec(values["gateway"]["extraConfig"]["misomap-profiles"], scope)  # noqa: S102 - our own chart values
    gpu = scope["options_handler"](types.SimpleNamespace(profile=GPU_PROFILE))
    assert gpu["worker_extra_container_config"]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert float(gpu["environment"]["DASK_DISTRIBUTED__WORKER__RESOURCES__GPU"]) == 1.0
    threads = gpu["worker_threads"]
    assert threads == worker_threads(True)
    assert task_resources(True, True)["GPU"] * threads == 1.0
    assert GPU_PROFILE in scope["c"].Backend.cluster_options.fields[0].options
