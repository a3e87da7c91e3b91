"""One scaling point in a fresh process, so its peak memory is its own.

``python -m benchmarks.point '{"case": "induction", "n": 1000, "nodes": 6, "reps": 3, "device": "cpu"}'``
prints one JSON line: the executor's wall times, peak resident memory (``VmHWM``, which only
grows, hence a fresh process per point) before and after scrubbing, and on CUDA the allocator's peak.
"""

from __future__ import annotations

import json
import resource
import sys

import torch

from benchmarks.cases import make_case
from benchmarks.measure import executor_rows, one_thread, timed
from scrub._executor import run_plan
from scrub._plan import make_plan


def _rss_mb() -> float:
    """Peak resident memory of this process image: ``VmHWM`` (``ru_maxrss`` keeps the parent's peak across exec)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux KiB; macOS reports bytes


def main(spec: dict) -> dict:
    one_thread()
    device = spec.get("device", "cpu")
    case = make_case(spec["case"], spec["n"], nodes=spec.get("nodes"))
    model = case.model.to(device)
    plan = make_plan(case.hypothesis, case.graph, case.data, 0, warn=False)
    before = _rss_mb()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = [timed(lambda: run_plan(model, plan, case.data), device)[0] for _ in range(spec.get("reps", 1))]
    out = {**spec, "times": times, "rss_setup_mb": before, "rss_peak_mb": _rss_mb(), **executor_rows(plan, case.data, case.model),
           "instances": len(plan.instances)}
    if device.startswith("cuda"):
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
