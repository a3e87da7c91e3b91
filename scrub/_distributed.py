"""Scoring on a Ray cluster: the plans' chunks of references run on the cluster's workers.

Everything but the scrubbed forward passes stays on the driver: options, hypotheses and data
are validated and every plan is sampled here, exactly as for a local run, and the clean run, the
metric and the bootstrap are computed here too. What goes to the cluster is the executor's work,
split by plan (one per hypothesis and seed, and the baseline's) and by *chunk of references*:
a task runs some consecutive chunks of one plan with :func:`scrub._executor.run_plan`'s
``chunks=``, with the batch size the local run uses, so every chunk is the very batch a local
run computes and the logits come back equal bit for bit (on workers with the same packages and
the same kind of CPU; see the distributed page of the docs).

The model, the data and each plan are put in the object store once per call (not per task:
a model may have changed since the last call in ways no hash of its weights shows, such as a
hook or its training mode); tasks carry references to them, and a worker process deserialises
each once and keeps it (a few, least recently used first out). Workers run torch on one thread.

A worker that dies mid-task (killed, out of memory) has its task retried on another
(:data:`MAX_RETRIES` times); an exception raised by the scoring itself is not retried but raised
here with its own type. An address that does not answer within :data:`CONNECT_TIMEOUT_S` seconds
is a :class:`~scrub.errors.ClusterError`, not a hang.
"""

from __future__ import annotations

import logging
import math
import socket
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from tqdm.auto import tqdm

from scrub._dataset import Dataset
from scrub._executor import plan_chunks, run_plan
from scrub._plan import Plan
from scrub.errors import ClusterError

__all__ = ["Cluster", "connect", "run_plans", "CONNECT_TIMEOUT_S", "MAX_RETRIES", "TASKS_PER_WORKER"]

_T = TypeVar("_T")

#: Seconds to wait for a cluster's address to answer before giving up.
CONNECT_TIMEOUT_S = 10.0
#: Times a task is retried after its worker process died (Ray's ``max_retries``).
MAX_RETRIES = 3
#: Tasks per worker a call is split into (when there are enough chunks): enough to even out
#: uneven plans, few enough that the per-task overhead stays small.
TASKS_PER_WORKER = 4


@dataclass(frozen=True)
class Cluster:
    """A connected Ray cluster: its address and how many CPUs (one task each) it has."""

    address: str
    n_workers: int

    def describe(self) -> str:
        """What a result's record says about where it ran: ``"ray: 8 workers at 10.0.0.5:6379"``."""
        return f"ray: {self.n_workers} workers at {self.address}"


def _ray():
    try:
        import ray
    except ModuleNotFoundError as exc:
        if exc.name != "ray":
            raise
        raise ClusterError("ray= needs Ray installed here and on the workers: pip install 'scrub[ray]'") from None
    return ray


def _reachable(address: str, timeout: float) -> None:
    """Refuse quickly an address nothing answers at (Ray itself would retry for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
        raise ClusterError(
            f"ray={address!r}: no Ray cluster answers there ({why}, after at most {timeout:g} s). Start one with "
            "`ray start --head` on the head node and pass the address it prints, or ray='auto' on a node of the cluster"
        ) from None


def _auto_address(ray) -> str | None:
    """The address ``"auto"`` stands for (``RAY_ADDRESS``, or the cluster ``ray start`` last started
    here), when Ray can tell without connecting; None when it cannot (Ray then says why)."""
    try:
        from ray._private.services import canonicalize_bootstrap_address

        found = canonicalize_bootstrap_address("auto")
    except Exception:  # a private helper of Ray: if it moved or failed, ray.init gives its own error
        return None
    return found if isinstance(found, str) and found.rpartition(":")[2].isdigit() else None


def connect(address: str, *, timeout: float | None = None) -> Cluster:
    """Connect this process to the Ray cluster at ``address`` (``"auto"``, ``HOST:PORT`` or ``ray://HOST:PORT``).

    A process already connected (``ray.init`` was called, e.g. by a test's local cluster) keeps its
    connection when ``address`` is ``"auto"`` or that cluster's address; another address is refused.
    An address nothing answers at within ``timeout`` seconds (default :data:`CONNECT_TIMEOUT_S`) is a
    :class:`~scrub.ClusterError`.
    """
    timeout = CONNECT_TIMEOUT_S if timeout is None else timeout
    ray = _ray()
    if ray.is_initialized():
        here = _address(ray)
        if address not in ("auto", here) and address.removeprefix("ray://") != here:
            _reachable(address, timeout)
            raise ClusterError(
                f"ray={address!r}: this process is already connected to the Ray cluster at {here}, and Ray "
                "connects a process to one cluster; call ray.shutdown() first, or pass ray='auto'"
            )
        return _cluster(ray)
    found = _auto_address(ray) if address == "auto" else address
    if found is not None:
        _reachable(found, timeout)
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    except ConnectionError as exc:
        raise ClusterError(
            f"ray={address!r}: {exc} (start one with `ray start --head`, or pass its address HOST:PORT)"
        ) from None
    except Exception as exc:  # a version mismatch, a refused handshake: say so, keeping Ray's words
        raise ClusterError(f"ray={address!r}: connecting failed ({type(exc).__name__}: {exc})") from exc
    return _cluster(ray)


def _address(ray) -> str:
    return str(ray.get_runtime_context().gcs_address)


def _cluster(ray) -> Cluster:
    cpus = int(ray.cluster_resources().get("CPU", 0))
    if cpus < 1:
        raise ClusterError(f"the Ray cluster at {_address(ray)} has no CPUs to run tasks on")
    return Cluster(address=_address(ray), n_workers=cpus)


# -- the driver's side ----------------------------------------------------------------------
def _groups(n_chunks: Sequence[int], n_workers: int) -> list[tuple[int, int, int]]:
    """``(plan, first chunk, end chunk)`` tasks: each plan's chunks cut into runs of equal length."""
    per_task = max(1, math.ceil(sum(n_chunks) / (TASKS_PER_WORKER * n_workers)))
    return [(p, a, min(n, a + per_task)) for p, n in enumerate(n_chunks) for a in range(0, n, per_task)]


def run_plans(
    cluster: Cluster,
    model,
    data: Dataset,
    plans: Sequence[Plan],
    *,
    batch_size: int,
    descs: Sequence[str],
    finish: Callable[[int, torch.Tensor], _T],
    progress: bool | None = False,
    threads: int = 1,
    ablation: Any = None,
) -> list[_T]:
    """``[finish(k, run_plan(model, p, data, batch_size=batch_size)) for k, p in enumerate(plans)]``,
    the passes computed on ``cluster``.

    ``finish`` is called here as soon as all of a plan's chunks are back (so that only the plans
    in flight hold their logits). ``descs`` name each plan in errors. Workers run torch on
    ``threads`` threads.
    """
    ray = _ray()
    refs = [ray.put(model), ray.put(data)]
    chunk_refs = [plan_chunks(model, p, data, batch_size=batch_size, ablation=ablation) for p in plans]
    n_chunks = [len(c) for c in chunk_refs]
    plan_refs = [ray.put(p) for p in plans]
    task = ray.remote(_run_chunks).options(num_cpus=1, max_retries=MAX_RETRIES, retry_exceptions=False)
    groups = _groups(n_chunks, cluster.n_workers)
    how = {"batch_size": batch_size, "threads": threads, "ablation": ablation}
    pending = {task.remote([*refs, plan_refs[p]], a, b, how): (p, a, b) for p, a, b in groups}
    parts: list[dict[int, torch.Tensor]] = [{} for _ in plans]
    ends: list[dict[int, int]] = [{} for _ in plans]
    left = [sum(q == p for q, _, _ in groups) for p in range(len(plans))]
    out: dict[int, _T] = {}
    bar = tqdm(total=len(groups), desc=cluster.describe(), disable=True if progress is False else None, leave=False)
    waiting = list(pending)
    try:
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1)
            for ref in ready:
                p, a, b = pending.pop(ref)
                parts[p][a] = _get(ray, ref, descs[p])
                ends[p][a] = b
                left[p] -= 1
                bar.update(1)
                if not left[p]:  # the plan is complete: each chunk's logits in its references' rows, as run_plan does
                    first = next(iter(parts[p].values()))
                    logits = first.new_empty((plans[p].n, first.shape[1]))
                    for k, part in parts[p].items():
                        logits[torch.from_numpy(np.concatenate(chunk_refs[p][k : ends[p][k]]))] = part
                    parts[p].clear()
                    out[p] = finish(p, logits)
    except BaseException:
        for ref in waiting:  # stop the rest; a cancelled task's error is of no interest
            ray.cancel(ref)
        raise
    finally:
        bar.close()
    return [out[p] for p in range(len(plans))]


def _get(ray, ref, desc: str) -> torch.Tensor:
    """A task's logits; its error raised with its own type (a lost worker: a ClusterError)."""
    from ray import exceptions as rex

    try:
        return ray.get(ref)
    except rex.RayTaskError as exc:  # the scoring raised on the worker: the same error, here
        cause = exc.cause if isinstance(exc.cause, BaseException) else None
        if cause is None:
            raise ClusterError(f"scoring {desc} failed on the Ray cluster: {exc}") from None
        cause.add_note(f"raised on a Ray worker while scoring {desc}")
        raise cause from None
    except (rex.WorkerCrashedError, rex.NodeDiedError, rex.ObjectLostError, rex.OutOfMemoryError,
            rex.TaskCancelledError, rex.RaySystemError) as exc:
        raise ClusterError(
            f"scoring {desc}: the Ray cluster lost the task {MAX_RETRIES + 1} times ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); its workers died or ran out of memory"
        ) from None


# -- the worker's side ----------------------------------------------------------------------
#: What this worker process has deserialised, by object reference: the model and data (one call's: they
#: may be large) and plans (more: a call has one per hypothesis and seed).
_HELD: dict[str, OrderedDict[str, Any]] = {"big": OrderedDict(), "plan": OrderedDict()}
_HOLD = {"big": 2, "plan": 64}  # a call's model and data; its plans


def _held(ray, ref, kind: str):
    cache, key = _HELD[kind], ref.hex()
    if key not in cache:
        cache[key] = ray.get(ref)
        while len(cache) > _HOLD[kind]:
            cache.popitem(last=False)
    cache.move_to_end(key)
    return cache[key]


def _run_chunks(refs: list, first: int, end: int, how: dict[str, Any]) -> torch.Tensor:
    """A task: chunks ``first .. end - 1`` of one plan, run on this worker. ``refs`` holds the
    model's, the data's and the plan's object references, in a list so that Ray passes the
    references themselves and this process deserialises each value once."""
    import ray

    torch.set_num_threads(how["threads"])
    model, data = _held(ray, refs[0], "big"), _held(ray, refs[1], "big")
    plan = _held(ray, refs[2], "plan")
    return run_plan(model, plan, data, batch_size=how["batch_size"], progress=False, chunks=slice(first, end),
                    ablation=how["ablation"])
