"""One way to run a plan of chunks: skip those with a completion record, submit the rest to
threads, a local dask cluster or dask-gateway through the same code, record each chunk after its
task returns, and report failures by chunk key.

A chunk task is a pure function `task(key, spec) -> info` of a frozen, hashable chunk key and the
job's frozen spec; it writes its chunk and returns a small JSON-able summary (what it wrote and the
output's checksum), which becomes the chunk's completion record.

Overlap: a task given as a `StagedTask` (read → compute → write) runs its compute stage under a
per-process limit of compute slots. With `Executor(overlap=True)` each worker gets one more thread
than it has slots, so while chunk n computes, the next chunk's read (and the last one's write) run
in the spare thread: reading chunk n+1 while chunk n computes, writes overlapped, at most one chunk
more in memory per worker. The stages run in the same order on the same data either way, so the
bytes written do not change.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from tqdm import tqdm

from misomap.core.config_base import GatewayConfig
from misomap.core.errors import one_line
from misomap.runtime.cluster import dask_client, task_resources
from misomap.runtime.records import CompletionRecords

log = logging.getLogger(__name__)


class ChunkKey(Hashable, Protocol):
    """A frozen, hashable chunk of a plan; `key` names it in records, logs and errors."""

    @property
    def key(self) -> str: ...


K = TypeVar("K", bound=ChunkKey)


@dataclass(frozen=True)
class RowChunk:
    """Rows [start, stop) of a table-like output (spectral embeddings), chunk `index`."""

    index: int
    start: int
    stop: int

    @property
    def key(self) -> str:
        return f"chunk-{self.index:06d}"


@dataclass(frozen=True)
class KeyedChunk:
    """A chunk of a plan tagged with the digest of its inputs (regeneration): its record names both,
    so a chunk whose inputs changed is no longer done."""

    window: Any
    input_key: str

    @property
    def key(self) -> str:
        return f"{self.window.key}-{self.input_key}"


@dataclass(frozen=True)
class StagedTask:
    """A chunk task in three stages the engine can overlap across chunks: `read(key, spec)` gathers
    the inputs (I/O, decoding), `compute(key, spec, inputs)` is the heavy part (the model), and
    `write(key, spec, outputs) -> info` stores the chunk and returns its completion record. Called
    as `task(key, spec)` it runs the three in a row, like any chunk task."""

    read: Callable[[Any, Any], Any]
    compute: Callable[[Any, Any, Any], Any]
    write: Callable[[Any, Any, Any], dict[str, Any]]

    def __call__(self, key: Any, spec: Any) -> dict[str, Any]:
        return self.write(key, spec, self.compute(key, spec, self.read(key, spec)))

    def staged(self, key: Any, spec: Any, slots: int) -> dict[str, Any]:
        """The three stages with the compute stage under this process's `slots` compute slots, so
        other threads of the worker read and write other chunks meanwhile."""
        inputs = self.read(key, spec)
        with compute_slots(slots):
            outputs = self.compute(key, spec, inputs)
        del inputs
        return self.write(key, spec, outputs)


_SLOTS: dict[int, threading.BoundedSemaphore] = {}
_SLOTS_LOCK = threading.Lock()


def compute_slots(slots: int) -> threading.BoundedSemaphore:
    """This process's semaphore of `slots` compute slots (one per process and size)."""
    with _SLOTS_LOCK:
        if slots not in _SLOTS:
            _SLOTS[slots] = threading.BoundedSemaphore(slots)
        return _SLOTS[slots]


def row_chunks(n_rows: int, size: int) -> list[RowChunk]:
    """Every row chunk of `n_rows` rows, `size` rows each (the last one shorter)."""
    return [RowChunk(i, start, min(n_rows, start + size)) for i, start in enumerate(range(0, n_rows, size))]


@dataclass(frozen=True)
class Executor:
    """Where chunk tasks run: `workers` local processes, or one in-process worker of `workers`
    threads (`threads`), or a dask-gateway cluster when `gateway.address` is set. `overlap` gives
    every worker a spare thread that reads and writes other chunks while one computes (for
    `StagedTask`s). `gpu`: one worker per GPU (dask-cuda on one machine; the gateway's GPU
    profile), and every task asks for a `GPU` resource."""

    workers: int
    gateway: GatewayConfig | None = None
    threads: bool = False
    overlap: bool = False
    gpu: bool = False

    @property
    def slots(self) -> int:
        """Chunks computing at once in one worker process."""
        return self.workers if self.threads else 1


@dataclass(frozen=True)
class ChunkFailure:
    """A chunk whose task raised one of the job's expected errors (the others went on): the chunk
    key, the error's type name and its one-line, redacted text. Made on the worker, so errors whose
    causes cannot be pickled (GDAL's) still reach the client whole."""

    key: str
    kind: str
    detail: str

    @property
    def message(self) -> str:
        return f"{self.kind}: {self.detail}"


@dataclass(frozen=True)
class RunReport:
    """What a run of a plan did: chunks in the plan, those it ran (the others were done), and
    those that failed."""

    total: int
    todo: tuple[Any, ...]
    failures: tuple[ChunkFailure, ...]

    @property
    def ran(self) -> int:
        return len(self.todo)

    @property
    def skipped(self) -> int:
        return self.total - len(self.todo)


def _execute(task: Callable[[Any, Any], dict[str, Any]], key: ChunkKey, spec: Any, records: CompletionRecords,
             expected: tuple[type[BaseException], ...], slots: int = 1) -> dict[str, Any] | ChunkFailure:
    """Run one chunk task (a StagedTask's compute under the process's compute slots), then write
    its completion record (after its data is durable); an expected error comes back as the chunk's
    ChunkFailure."""
    try:
        info = task.staged(key, spec, slots) if isinstance(task, StagedTask) else task(key, spec)
    except expected as err:
        return ChunkFailure(key.key, type(err).__name__, one_line(err))
    records.mark(key.key, info)
    return info


def run_plan(plan: Sequence[K], task: Callable[[K, Any], dict[str, Any]], spec: Any,
             records: CompletionRecords, executor: Executor | Any, *, name: str,
             expected: tuple[type[BaseException], ...] = ()) -> RunReport:
    """Run every chunk of `plan` that has no completion record, on a cluster the Executor starts
    (or on an open distributed Client, for jobs running several plans on one cluster). A chunk
    whose task raises one of `expected` becomes a ChunkFailure (the rest go on, so a rerun retries
    only the failed ones); any other error cancels what is left and is raised as is."""
    done = records.done()
    todo = [k for k in plan if k.key not in done]
    log.info("%s: %d chunks, %d done, %d to run", name, len(plan), len(plan) - len(todo), len(todo))
    failures: list[ChunkFailure] = []
    if todo and isinstance(executor, Executor):
        with dask_client(executor.workers, executor.gateway, executor.threads, overlap=executor.overlap,
                         gpu=executor.gpu) as client:
            failures = _submit(client, todo, len(plan), task, spec, records, name, expected, executor.slots,
                               task_resources(executor.gpu, executor.overlap, executor.threads))
    elif todo:
        failures = _submit(executor, todo, len(plan), task, spec, records, name, expected)
    return RunReport(len(plan), tuple(todo), tuple(failures))


def _submit(client: Any, todo: list[K], total: int, task: Callable[[K, Any], dict[str, Any]], spec: Any,
            records: CompletionRecords, name: str, expected: tuple[type[BaseException], ...], slots: int = 1,
            resources: dict[str, float] | None = None) -> list[ChunkFailure]:
    from distributed import as_completed

    failures: list[ChunkFailure] = []
    with tqdm(total=total, initial=total - len(todo), desc=name, unit="chunk") as bar:
        shared = client.scatter(spec, broadcast=True)
        futures = [client.submit(_execute, task, k, shared, records, expected, slots, key=f"{name}-{k.key}",
                                 pure=False, resources=resources)
                   for k in todo]
        try:
            for fut in as_completed(futures):
                bar.update(1)
                if fut.status == "error":
                    raise fut.exception()
                if isinstance(result := fut.result(), ChunkFailure):
                    failures.append(result)
        except BaseException:
            client.cancel(list(futures))
            raise
    return failures
