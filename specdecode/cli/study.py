"""``specdecode study``: the seed 001 notebook's experiments, corrected, with plots and a summary, in one command."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

NAME = "study"
HELP = "the seed 001 study: acceptance/speedup vs k and T, rejections, draft similarity, exercises; plots + summary"
DESCRIPTION = (
    "Runs every experiment of the seed 001 notebook with the engine (exact verification, bonus tokens, "
    "right counts) and writes PNG plots, records.json and summary.md / summary.html to --out. "
    "--model toy (default): the notebook's toy target with drafts derived from its weights by a "
    "similarity factor (a few minutes on 2 cores). --model smollm2-135m: the real model with early-exit "
    "drafts (similarity = fraction of its layers). --quick: a smaller grid."
)


def add_args(ap) -> None:
    ap.add_argument("--model", default="toy", choices=["toy", "smollm2-135m"], help="toy (default) or smollm2-135m")
    ap.add_argument(
        "--out", default="study-out", help="folder for the plots, records.json and summary (default study-out)"
    )
    ap.add_argument("--quick", action="store_true", help="fewer k, T, prompts and similarity levels")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _progress(t0: float):
    def say(text: str) -> None:
        print(f"\r[{time.perf_counter() - t0:6.0f} s] {text:<70}", end="", file=sys.stderr, flush=True)

    return say


def run(args) -> int:
    from ..bench import study as S
    from ..bench import study_plots as P
    from ..bench.report import markdown_to_html

    plan = S.plan_for(args.model, args.quick)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--out {out}: cannot create it ({exc.strerror})") from None
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    st = S.Study(plan, _progress(t0))
    head = S.headline(st)
    grid = S.grid(st)
    rej = S.rejections(st)
    sim = S.similarity(st)
    ex = S.exercises(st)
    print(file=sys.stderr)
    plots = [
        P.plot_grid(grid, plan.ks, plan.temps, out),
        P.plot_speedup(grid, plan.ks, plan.temps, out),
        P.plot_rejections(rej, rej["alpha"], out),
        P.plot_similarity(sim, plan.similarity_name, 4, out),
        P.plot_exercises(ex, grid, plan.ks, out),
    ]
    secs = time.perf_counter() - t0
    md = _summary(plan, args, head, grid, rej, sim, ex, secs, load0)
    _write_atomic(
        out / "records.json",
        json.dumps(
            {
                "plan": plan.__dict__,
                "headline": head,
                "grid": grid,
                "rejections": rej,
                "similarity": sim,
                "exercises": ex,
            },
            default=str,
        ),
    )
    _write_atomic(out / "summary.md", "\n".join(md) + "\n")
    _write_atomic(out / "summary.html", markdown_to_html(md, "specdecode study"))
    print("\n".join(md))
    print(
        f"\nwrote {', '.join(p.name for p in plots)}, records.json, summary.md, summary.html to {out}/ in {secs:.0f} s"
    )
    return 0


def _summary(plan, args, head, grid, rej, sim, ex, secs, load0) -> list[str]:
    from ..bench import study_report as R

    quick = " --quick" if args.quick else ""
    lines = [
        f"# specdecode study: {plan.label}",
        "",
        f"Reproduce: `specdecode study --model {args.model}{quick} --out {args.out}` ({secs:.0f} s here; load average "
        f"{load0:.2f} before, {os.getloadavg()[0]:.2f} after, {os.cpu_count()} cores). Draft of the k x T grid: "
        f"`{plan.draft}`; sampling top-k {plan.top_k}; {plan.trials} prompts per cell, {plan.new_tokens} new "
        f"tokens each; speedup = tokens/s over plain decoding of the same prompt, measured right before.",
        "",
    ]
    lines += R.headline_lines(head) + R.grid_lines(grid, plan.ks, plan.temps) + R.rejection_lines(rej)
    lines += R.similarity_lines(sim, plan.similarity_name, 4) + R.exercise_lines(ex, grid, plan.ks, 4)
    if plan.model == "toy-target":
        lines += [
            "**A real model**: `specdecode study --model smollm2-135m --quick` runs this study on SmolLM2-135M.",
            "",
        ]
    lines += R.tradeoff_lines(grid, sim, ex, plan.ks) + R.summary_report_lines(grid, rej, sim, plan.ks)
    return lines
