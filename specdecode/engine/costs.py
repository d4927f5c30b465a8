"""The cost of a target pass over n new tokens, T(n), measured once per backend object (and kept in a file the
caller names, so later processes reuse it). Adaptive draft lengths read these fixed costs instead of timing
every step, which keeps seeded adaptive runs repeatable.

Not here: the controller that uses them (``adaptive``).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

N_MAX = 17  # passes over 1..17 tokens are measured; longer ones are extrapolated with the last slope


def measure_pass_costs(lm, n_max: int = N_MAX, reps: int = 5, context: int = 64) -> list[float]:
    """Median seconds of one pass over n = 1..n_max new tokens after a ``context``-token prefix (row 0), the
    n interleaved so that a slow phase of the machine hits every n alike. Resets ``lm``."""
    ids = [(31 * i + 7) % min(lm.vocab_size, 4096) for i in range(context + n_max)]
    lm.reset(1)
    lm.extend([ids[:context]], need_logits=False)
    lm.extend([ids[context : context + n_max]])  # warm-up
    lm.rollback([context])
    times: list[list[float]] = [[] for _ in range(n_max)]
    for _ in range(reps):
        for n in range(1, n_max + 1):
            t0 = time.perf_counter()
            lm.extend([ids[context : context + n]])
            times[n - 1].append(time.perf_counter() - t0)
            lm.rollback([context])
    lm.reset(1)
    return [statistics.median(t) for t in times]


def load_or_measure(lm, path: Path | None) -> list[float]:
    """The costs stored in ``path`` if it holds a valid table, else measured now (and stored there, atomically)."""
    if path is not None and path.exists():
        try:
            costs = json.loads(path.read_text())["seconds"]
            if len(costs) == N_MAX and all(c > 0 for c in costs):
                return costs
        except (OSError, ValueError, KeyError, TypeError):
            pass  # unreadable: measure again
    costs = measure_pass_costs(lm)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".costs-", dir=path.parent)
            with os.fdopen(fd, "w") as fh:
                json.dump({"seconds": costs, "measured": time.strftime("%Y-%m-%d %H:%M:%S")}, fh)
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only cache: the table lives for this process only
    return costs


def extrapolate(costs: list[float], n: int) -> float:
    """T(n) from a table of T(1..len): measured, or the last slope beyond it."""
    if n <= len(costs):
        return costs[n - 1]
    slope = max(costs[-1] - costs[-2], 0.0) if len(costs) > 1 else 0.0
    return costs[-1] + slope * (n - len(costs))
