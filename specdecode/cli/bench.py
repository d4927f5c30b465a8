"""``specdecode bench``: the sweep (drafters x k x temperature x method x task) and its report with plots."""

from __future__ import annotations

import sys
from pathlib import Path

from ..bench.report import write_report
from ..bench.run import run_sweep
from ..models.cache import default_draft_dir

NAME = "bench"
HELP = "sweep drafters x k x temperature x method x task on the real model; JSONL + report with plots"
DESCRIPTION = (
    "Runs the benchmark sweep (our prompt set, 7 categories) with interleaved baselines (our plain decoding, HF "
    "generate, HF prompt lookup, HF early-exit assisted generation), writes one JSONL record per run to "
    "OUT/records.jsonl (resumable: existing records are skipped) and a markdown + HTML report with PNG plots."
)


def add_args(bn) -> None:
    bn.add_argument("--out", required=True, help="output folder (records.jsonl, report.md, report.html, *.png)")
    bn.add_argument(
        "--quick", action="store_true", help="a few minutes: 1 prompt per task, k in {2,4,8,adaptive}, T in {0, 0.8}"
    )
    bn.add_argument("--model", default="smollm2-135m")
    bn.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    bn.add_argument("--report-only", action="store_true", help="only rebuild the report from the existing records")
    bn.add_argument(
        "--ray",
        action="store_true",
        help="run the sweep on Ray: each prompt's configurations on one actor, one model load per actor "
        "(a local Ray instance unless --ray-address); default: this process",
    )
    bn.add_argument(
        "--ray-address", metavar="ADDR", help="an existing Ray cluster ('auto' or host:port); implies --ray"
    )
    bn.add_argument(
        "--ray-workers",
        type=int,
        default=2,
        help="Ray actors (default 2; on a 2-core machine parallel workers distort timings)",
    )
    bn.add_argument(
        "--quality-draft",
        action="append",
        default=[],
        metavar="PATH",
        help="a trained draft that only joins the draft-quality study (repeatable), e.g. the snapshots of "
        "`specdecode distill --snapshots 50,150,400` (drafts trained for increasing steps)",
    )
    bn.add_argument(
        "--draft",
        action="append",
        metavar="PATH",
        help="add a trained draft (specdecode distill) as a drafter, repeatable; by default the default "
        "`specdecode distill` output for --model is added when it exists; --draft none: no trained draft",
    )


def run(args) -> int:
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"--out {out} is not a writable folder ({exc.strerror})") from None
    records = out / "records.jsonl"
    if not args.report_only:
        run_sweep(
            out,
            args.quick,
            args.model,
            args.dtype,
            progress=True,
            drafts=_bench_drafts(args),
            ray=args.ray or bool(args.ray_address),
            ray_address=args.ray_address,
            ray_workers=args.ray_workers,
            quality_drafts=existing_folders(args.quality_draft, "--quality-draft"),
        )
    if not records.exists():
        raise ValueError(f"no records in {out}: run without --report-only first")
    path = write_report(records, out)
    print(path.read_text().split("## All configurations")[0])
    print(f"report: {path} and {out / 'report.html'}")
    return 0


def existing_folders(paths: list, flag: str) -> tuple:
    for d in paths:
        if not Path(d).expanduser().is_dir():
            raise ValueError(f"{flag} {d}: no such folder (train one with `specdecode distill`)")
    return tuple(paths)


def _bench_drafts(args) -> tuple:
    if args.draft:
        return existing_folders([d for d in args.draft if d != "none"], "--draft")
    d = default_draft_dir(args.model)
    if d.is_dir():
        print(f"[specdecode] adding the trained draft {d} (--draft none to leave it out)", file=sys.stderr)
        return (str(d),)
    return ()
