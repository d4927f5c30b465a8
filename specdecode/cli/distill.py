"""``specdecode distill``: argument parsing and printing only (the work is in ``specdecode.distill``)."""

from __future__ import annotations

import sys

from ..distill import DistillConfig, default_out, distill

NAME = "distill"
HELP = "train a small draft for a target (distillation on its own generations)"
DESCRIPTION = (
    "Generates labelled data with the target (its own continuations of built-in prompts, plus --corpus files), "
    "trains a draft with a reduced-vocabulary head (soft cross-entropy to the target's distributions): by default "
    "an EAGLE-style head on the target's hidden states, or a shallow standalone model (--arch shallow), and saves "
    "it for --drafter model:OUT. Resumable: run the same command again after an interruption; --max-minutes "
    "bounds data + training. Evaluate with `specdecode bench-draft`."
)


def add_args(ap) -> None:
    d = DistillConfig()
    _add_data_args(ap, d)
    _add_training_args(ap, d)


def _add_data_args(ap, d: DistillConfig) -> None:
    """The target, the draft's shape and the data it is trained on."""
    ap.add_argument("--model", default=d.model, help=f"target: a registry name or a local folder (default {d.model})")
    ap.add_argument(
        "--out",
        help="where to save the draft (default: $SPECDECODE_CACHE/drafts/MODEL-eagle-V<head> or "
        "MODEL-L<layers>-V<head>); the work folder OUT.work keeps data and checkpoints for resuming",
    )
    ap.add_argument(
        "--arch",
        default=d.arch,
        choices=["eagle", "shallow"],
        help="eagle (default): one decoder layer on the target's own hidden states (EAGLE-style, batch 1); "
        "shallow: a standalone small model (first --layers layers of the target), also usable by HF",
    )
    ap.add_argument(
        "--layers", type=int, default=d.layers, help=f"decoder layers of a shallow draft (default {d.layers})"
    )
    ap.add_argument(
        "--head-tokens",
        type=int,
        default=d.head_tokens,
        help=f"tokens in the draft's head, the most frequent in the target's generations (0 = all; default "
        f"{d.head_tokens})",
    )
    ap.add_argument(
        "--prompts",
        type=int,
        default=d.prompts,
        help=f"built-in training prompts to generate from (max 5130; default {d.prompts}: all, as many as the time "
        f"allows)",
    )
    ap.add_argument(
        "--max-new-tokens",
        type=int,
        default=d.max_new_tokens,
        help=f"tokens generated per prompt (default {d.max_new_tokens})",
    )
    ap.add_argument(
        "--gen-temperatures",
        default=",".join(str(t) for t in d.gen_temperatures),
        help="temperatures used in turn for the data batches (default 0.8,0.0)",
    )
    ap.add_argument(
        "--gen-batch", type=int, default=d.gen_batch, help=f"prompts generated together (default {d.gen_batch})"
    )
    ap.add_argument(
        "--gen-dtype",
        default=d.gen_dtype,
        choices=["fp32", "bf16"],
        help="target precision for data generation (default bf16)",
    )
    ap.add_argument(
        "--corpus",
        action="append",
        default=[],
        metavar="FILE",
        help="also train on this local text file (repeatable), labelled by the target",
    )


def _add_training_args(ap, d: DistillConfig) -> None:
    """Training, budget and resumption flags."""
    ap.add_argument("--steps", type=int, default=d.steps, help=f"training steps at most (default {d.steps})")
    ap.add_argument("--batch-size", type=int, default=d.batch_size, help=f"sequences per step (default {d.batch_size})")
    ap.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate (default {d.lr})")
    ap.add_argument(
        "--unroll",
        type=int,
        default=d.unroll,
        help="EAGLE: also train drafting steps 2..N, which start from the head's own predicted features, as "
        f"the drafter runs them (training-time test; step N costs about one more forward; default {d.unroll})",
    )
    ap.add_argument(
        "--unroll-from",
        type=float,
        default=d.unroll_from,
        help=f"share of the training after which --unroll applies (before: step 1 only; default {d.unroll_from})",
    )
    ap.add_argument(
        "--max-minutes",
        type=float,
        default=d.max_minutes,
        help=f"wall-clock budget for data + training, across resumes (default {d.max_minutes})",
    )
    ap.add_argument(
        "--eval-every",
        type=int,
        default=d.eval_every,
        help=f"held-out evaluation every N steps (default {d.eval_every})",
    )
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument(
        "--snapshots",
        default="",
        metavar="STEPS",
        help="also save the draft at these steps (comma-separated) to OUT.snapshots/step-N, e.g. for "
        "`specdecode bench --quality-draft` (drafts trained for increasing steps)",
    )
    ap.add_argument(
        "--restart", action="store_true", help="discard the work folder of an earlier run instead of resuming it"
    )
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")


def _temps(text: str) -> tuple:
    try:
        return tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise ValueError(f"--gen-temperatures must be comma-separated numbers, got {text!r}") from None


def _ints(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"--snapshots must be comma-separated step numbers, got {text!r}") from None


def run(args) -> int:
    out = args.out or str(default_out(args.model, args.arch, args.layers, args.head_tokens))
    cfg = DistillConfig(
        model=args.model,
        out=out,
        arch=args.arch,
        layers=args.layers,
        head_tokens=args.head_tokens,
        prompts=args.prompts,
        max_new_tokens=args.max_new_tokens,
        gen_temperatures=_temps(args.gen_temperatures),
        gen_batch=args.gen_batch,
        gen_dtype=args.gen_dtype,
        corpus=tuple(args.corpus),
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        unroll=args.unroll,
        unroll_from=args.unroll_from,
        max_minutes=args.max_minutes,
        eval_every=args.eval_every,
        seed=args.seed,
        snapshots=tuple(_ints(args.snapshots)),
    )
    res = distill(cfg, restart=args.restart, progress=not args.no_progress)
    later = "greedy_match_s2" in res.history[-1]  # EAGLE heads: also drafting steps 2 and 3 (predicted features)
    print(
        f"{'step':>6} {'held-out loss':>13} {'alpha (T=1, >=)':>15} {'greedy match':>12}"
        + (f" {'greedy match step 2':>19} {'step 3':>6}" if later else "")
    )
    for h in res.history:
        print(
            f"{h['step']:>6} {h['loss']:>13.4f} {h['alpha_t1']:>15.3f} {h['greedy_match']:>12.3f}"
            + (
                f" {h.get('greedy_match_s2', float('nan')):>19.3f} {h.get('greedy_match_s3', float('nan')):>6.3f}"
                if later
                else ""
            )
        )
    print(
        f"\ndraft saved to {res.out} ({res.steps} steps, {res.train_tokens} training tokens, {res.minutes:.1f} min in "
        f"all)"
    )
    print(f"use it with: specdecode generate --model {args.model} --drafter model:{res.out} ...", file=sys.stdout)
    return 0
