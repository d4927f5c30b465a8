"""The cost of a target pass over n new tokens, T(n), and the seconds per draft token: the table adaptive
draft lengths read instead of timing every step, which keeps seeded adaptive runs repeatable.

A ``CostTable`` is resolved when a session opens, before any row exists (``SpeculativeGenerator.open``):
read from a file (the generator's cost folder, one file per backend, or a file the caller names with
``--costs FILE`` / ``GenerationConfig.costs``), or measured then and written there. Measuring resets the
backend, so ``measure_pass_costs`` refuses a backend that holds rows; nothing measures during a batch.
The table says where it came from (``source``), and run statistics repeat it.

Not here: the controller that uses the table (``adaptive``).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

N_MAX = 17  # passes over 1..17 tokens are measured; longer ones are extrapolated with the last slope


@dataclass(frozen=True)
class CostTable:
    seconds: tuple  # T(n) for n = 1..N_MAX: seconds of one target pass over n new tokens
    draft_token: float | None = None  # seconds per draft token (None: the drafter is timed as it drafts)
    source: str = "measured now"  # "file PATH" | "measured now" | "measured now, saved to PATH"

    def with_draft(self, draft_token: float | None) -> CostTable:
        return CostTable(self.seconds, draft_token, self.source)


def measure_pass_costs(lm, n_max: int = N_MAX, reps: int = 5, context: int = 64) -> list[float]:
    """Median seconds of one pass over n = 1..n_max new tokens after a ``context``-token prefix (row 0), the
    n interleaved so that a slow phase of the machine hits every n alike. ``lm`` must hold no tokens: measuring
    resets it (a running batch would lose its caches)."""
    if any(lm.lengths):
        raise RuntimeError("pass costs are measured before any row exists: measuring resets the backend's rows")
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


def read_table(path: Path) -> CostTable:
    """The table stored in ``path``; ValueError naming the file when it is missing or not a valid table."""
    try:
        data = json.loads(Path(path).read_text())
        seconds = tuple(float(c) for c in data["seconds"])
        draft = data.get("draft_token")
        draft = None if draft is None else float(draft)
    except FileNotFoundError:
        raise ValueError(f"costs: no cost table at {path}") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise ValueError(f"costs: {path} is not a cost table (JSON with 'seconds': {N_MAX} numbers > 0)") from None
    if len(seconds) != N_MAX or not all(c > 0 for c in seconds) or (draft is not None and draft < 0):
        raise ValueError(f"costs: {path} is not a cost table (JSON with 'seconds': {N_MAX} numbers > 0)")
    return CostTable(seconds, draft, f"file {path}")


def write_table(path: Path, table: CostTable) -> bool:
    """Store ``table`` in ``path`` atomically -> whether it was written (a read-only folder keeps it in memory)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".costs-", dir=path.parent)
        with os.fdopen(fd, "w") as fh:
            json.dump(
                {
                    "seconds": list(table.seconds),
                    "draft_token": table.draft_token,
                    "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
                },
                fh,
            )
        os.replace(tmp, path)
        return True
    except OSError:
        return False


class CostBook:
    """Cost tables of the backends a generator uses, each resolved once: from memory, from ``folder``
    (one file per backend, named by its ``cost_key``), or measured now and stored there."""

    def __init__(self, folder: Path | None = None):
        self.folder = folder
        self._tables: dict = {}  # backend object -> its CostTable

    def file_for(self, lm) -> Path | None:
        if self.folder is None:
            return None
        return Path(self.folder) / (re.sub(r"[^A-Za-z0-9._-]+", "_", lm.cost_key) + ".json")

    def table(self, lm) -> CostTable:
        """``lm``'s table (measuring it resets ``lm``: call before any of its rows exist)."""
        if lm not in self._tables:
            self._tables[lm] = self._load_or_measure(lm, self.file_for(lm))
        return self._tables[lm]

    def named(self, lm, path: Path, draft_token) -> CostTable:
        """The table in the file the caller named; missing there: measured now (with the draft cost
        ``draft_token()``) and written to it, so later runs on any machine read the same numbers."""
        path = Path(path).expanduser()
        if path.exists():
            return read_table(path)
        table = CostTable(tuple(measure_pass_costs(lm)), draft_token())
        if not write_table(path, table):
            raise ValueError(f"costs: cannot write the cost table to {path}")
        return CostTable(table.seconds, table.draft_token, f"measured now, saved to {path}")

    @staticmethod
    def _load_or_measure(lm, path: Path | None) -> CostTable:
        if path is not None and path.exists():
            try:
                return read_table(path)
            except ValueError:
                pass  # unreadable: measured again
        table = CostTable(tuple(measure_pass_costs(lm)))
        if path is not None and write_table(path, table):
            return CostTable(table.seconds, None, f"measured now, saved to {path}")
        return table


def extrapolate(costs, n: int) -> float:
    """T(n) from a table of T(1..len): measured, or the last slope beyond it."""
    if n <= len(costs):
        return costs[n - 1]
    slope = max(costs[-1] - costs[-2], 0.0) if len(costs) > 1 else 0.0
    return costs[-1] + slope * (n - len(costs))
