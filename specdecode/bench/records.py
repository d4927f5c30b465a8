"""The sweep's record file: repairing a line cut by an interruption, and the keys of the runs already done
(so an interrupted sweep resumes where it stopped).

Not here: running the sweep (``run``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def repair_torn_line(path: Path) -> None:
    """Drop a last line that a crash cut mid-record (the file then ends without a newline), saying so on stderr."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    keep = data.rfind(b"\n") + 1
    with path.open("r+b") as fh:
        fh.truncate(keep)
    print(
        f"[specdecode] {path}: dropped a record cut by an interruption ({len(data) - keep} bytes); it runs again",
        file=sys.stderr,
    )


def done_keys(path: Path, versions: dict) -> set:
    """Keys of the records already in ``path``; refuses records of an earlier version of a retrained draft."""
    done = set()
    if not path.exists():
        return done
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
            done.add(rec["key"])
        except (json.JSONDecodeError, KeyError):
            continue  # a line cut by an interruption: that record runs again
        old, new = rec.get("draft_version"), versions.get(rec.get("drafter"))
        if old and new and old != new:
            raise ValueError(
                f"{path} holds records of an earlier version of {rec['drafter'].split(':', 1)[1]} "
                f"({old}; now {new}): the draft was retrained. Use a new --out folder"
            )
    return done
