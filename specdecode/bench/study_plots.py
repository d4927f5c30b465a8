"""Plots of ``specdecode study``: one PNG per notebook figure, from the records of ``bench.study``.

Not here: running experiments (``study``) or the written summary (``study_report``).
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from ..analysis.theory import expected_tokens_per_step, speedup


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def mean_std(xs) -> tuple[float, float]:
    """Mean and population std of the numbers that are not NaN (NaN, NaN when there are none)."""
    xs = [x for x in xs if x == x]
    return (statistics.fmean(xs), statistics.pstdev(xs)) if xs else (math.nan, math.nan)


def acceptance(r: dict) -> float:
    """The seed's acceptance rate, counted right: accepted draft tokens / proposed draft tokens."""
    return r["accepted"] / r["proposed"] if r["proposed"] else math.nan


def tokens_per_call(r: dict) -> float:
    """The seed's "throughput multiplier", counted right: tokens (bonus and recovered included) per target call."""
    return r["tokens"] / r["row_steps"] if r["row_steps"] else math.nan


def cell(records: list[dict], key, **match) -> tuple[float, float]:
    """Mean and std of key(record) over the records matching every field in ``match``."""
    return mean_std([key(r) for r in records if all(r.get(f) == v for f, v in match.items())])


def _bands(ax, xs, records, key, x_field: str, series_field: str, series, label_fmt: str):
    """One line per value of ``series_field`` over ``xs`` (values of ``x_field``): mean with a +- std band."""
    for v in series:
        ms = [cell(records, key, **{series_field: v, x_field: x}) for x in xs]
        m, s = [a for a, _ in ms], [b for _, b in ms]
        ax.plot(xs, m, marker="o", label=label_fmt.format(v))
        ax.fill_between(xs, [a - b for a, b in zip(m, s)], [a + b for a, b in zip(m, s)], alpha=0.15)


def plot_grid(records: list[dict], ks, temps, out: Path) -> Path:
    """The notebook's 2x2 figure: acceptance and tokens per call vs k per T (mean +- std bands, the mean over T
    dashed), acceptance vs T per k, and the k x T heatmap of acceptance."""
    plt = _plt()
    fig, ax = plt.subplots(2, 2, figsize=(13, 10))
    for a, key, name in (
        (ax[0, 0], acceptance, "acceptance rate (accepted / proposed)"),
        (ax[0, 1], tokens_per_call, "tokens per target call"),
    ):
        _bands(a, list(ks), records, key, "k", "T", temps, "T = {}")
        mean_line = [cell(records, key, k=k)[0] for k in ks]
        a.plot(ks, mean_line, "k--", label="mean over T")
        a.set(xlabel="lookahead k", ylabel=name, title=f"{name} vs k (mean ± std over prompts)")
        a.grid(alpha=0.3)
        a.legend()
    _bands(ax[1, 0], list(temps), records, acceptance, "T", "k", ks, "k = {}")
    ax[1, 0].set(xlabel="temperature", ylabel="acceptance rate", title="acceptance vs temperature")
    ax[1, 0].grid(alpha=0.3)
    ax[1, 0].legend()
    heat = [[cell(records, acceptance, k=k, T=T)[0] for k in ks] for T in temps]
    im = ax[1, 1].imshow(heat, cmap="viridis", aspect="auto", origin="lower")
    ax[1, 1].set(
        xticks=range(len(ks)),
        xticklabels=ks,
        yticks=range(len(temps)),
        yticklabels=temps,
        xlabel="lookahead k",
        ylabel="temperature",
        title="acceptance rate, k x T",
    )
    for i, row in enumerate(heat):
        for j, v in enumerate(row):
            ax[1, 1].text(j, i, f"{v:.2f}", ha="center", va="center", color="w")
    fig.colorbar(im, ax=ax[1, 1])
    return _save(fig, out / "grid.png")


def plot_speedup(records: list[dict], ks, temps, out: Path) -> Path:
    """Measured speedup (tokens/s over plain decoding on the same prompt) vs k per T, the best cell marked."""
    plt = _plt()
    fig, a = plt.subplots(figsize=(8, 5.5))
    _bands(a, list(ks), records, lambda r: r["speedup"], "k", "T", temps, "T = {}")
    a.plot(ks, [cell(records, lambda r: r["speedup"], k=k)[0] for k in ks], "k--", label="mean over T")
    best = max(
        ((k, T) for k in ks for T in temps), key=lambda kt: cell(records, lambda r: r["speedup"], k=kt[0], T=kt[1])[0]
    )
    b = cell(records, lambda r: r["speedup"], k=best[0], T=best[1])[0]
    a.scatter(
        [best[0]], [b], s=200, facecolors="none", edgecolors="red", label=f"best: k={best[0]}, T={best[1]} ({b:.2f}x)"
    )
    a.axhline(1.0, color="gray", lw=1)
    a.set(xlabel="lookahead k", ylabel="speedup over plain decoding (tok/s ratio)", title="measured speedup vs k")
    a.grid(alpha=0.3)
    a.legend()
    return _save(fig, out / "speedup.png")


def plot_rejections(rej: dict, alpha: float, out: Path) -> Path:
    """Histogram of rejection positions (steps with all drafts accepted apart) and acceptance by position:
    P(drafts 1..i all accepted), measured and alpha^i."""
    plt = _plt()
    k = rej["k"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(14, 5))
    a1.bar(range(k), rej["hist"], color="tab:red", alpha=0.7, edgecolor="black", label="rejected at this position")
    a1.bar([k], [rej["all_accepted"]], color="tab:green", alpha=0.7, edgecolor="black", label="all k accepted (bonus)")
    stats = rejection_stats(rej)
    if stats["count"]:
        a1.axvline(stats["mean"], color="red", ls="--", label=f"mean {stats['mean']:.2f}")
        a1.axvline(stats["median"], color="orange", ls="--", label=f"median {stats['median']:.1f}")
    a1.set(
        xlabel="draft position of the first rejection (0 = first draft)",
        ylabel="steps",
        title=f"rejection positions, k = {k}, {rej['steps']} steps",
        xticks=range(k + 1),
        xticklabels=[str(i) for i in range(k)] + ["none"],
    )
    a1.legend()
    a1.grid(alpha=0.3)
    cum, reach = position_rates(rej)
    xs = list(range(1, k + 1))
    a2.plot(xs, cum, "o-", label="measured P(first i drafts accepted)")
    a2.plot(xs, reach, "s-", label="measured P(draft i accepted | reached)")
    if alpha == alpha:
        a2.plot(
            xs,
            [alpha**i for i in xs],
            "k--",
            label=f"alpha^i (alpha = {alpha:.2f}: sum min(p, q) measured in these runs)",
        )
    a2.set(xlabel="draft position i", ylabel="probability", ylim=(0, 1.05), title="acceptance by position")
    a2.grid(alpha=0.3)
    a2.legend()
    return _save(fig, out / "rejections.png")


def position_rates(rej: dict) -> tuple[list[float], list[float]]:
    """(P(draft tokens 1..i all accepted), P(draft i accepted | 1..i-1 were)) per position i. The engine counts
    position i as accepted only when every earlier one was, so accepted / proposed is already the first."""
    cum = [a / p if p else math.nan for a, p in zip(rej["pos_accepted"], rej["pos_proposed"])]
    cond = [c / prev if prev else math.nan for c, prev in zip(cum, [1.0] + cum[:-1])]
    return cum, cond


def rejection_stats(rej: dict) -> dict:
    """Mean / median / most common position of the first rejection (steps where one happened)."""
    pos = [i for i, n in enumerate(rej["hist"]) for _ in range(n)]
    if not pos:
        return {"count": 0, "mean": math.nan, "median": math.nan, "mode": None}
    return {
        "count": len(pos),
        "mean": statistics.fmean(pos),
        "median": statistics.median(pos),
        "mode": max(range(len(rej["hist"])), key=lambda i: rej["hist"][i]),
    }


def plot_similarity(records: list[dict], name: str, k: int, out: Path) -> Path:
    """alpha and acceptance vs similarity; measured speedup vs similarity beside S(alpha, k, c); speedup vs
    alpha with the theory curve for the measured c."""
    plt = _plt()
    sims = sorted({r["similarity"] for r in records})
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(19, 5.5))
    for key, label in (
        (lambda r: r["alpha"], "alpha = E[sum min(p, q)] (measured)"),
        (acceptance, "accepted / proposed"),
    ):
        ms = [cell(records, key, similarity=s) for s in sims]
        a1.errorbar(sims, [m for m, _ in ms], yerr=[d for _, d in ms], marker="o", capsize=4, label=label)
    a1.set(xlabel=name, ylabel="rate", title="acceptance vs draft similarity", ylim=(0, 1.05))
    a1.legend()
    sp = [cell(records, lambda r: r["speedup"], similarity=s) for s in sims]
    alpha = [cell(records, lambda r: r["alpha"], similarity=s)[0] for s in sims]
    cs = [cell(records, lambda r: r["c"], similarity=s)[0] for s in sims]
    theory = [speedup(min(a, 1.0), k, c) for a, c in zip(alpha, cs)]
    a2.errorbar(
        sims, [m for m, _ in sp], yerr=[d for _, d in sp], marker="s", capsize=4, label="measured (tok/s ratio)"
    )
    ts = [cell(records, lambda r: r["t"], similarity=s)[0] for s in sims]
    a2.plot(sims, theory, "k--", marker="x", label="theory S(alpha, k, c), measured alpha and c")
    a2.plot(
        sims,
        [expected_tokens_per_step(min(a, 1.0), k) / (k * c + t) for a, c, t in zip(alpha, cs, ts)],
        "g-.",
        marker="+",
        label="with the measured verify-pass cost t: E[G] / (k c + t)",
    )
    a2.plot(
        sims,
        [expected_tokens_per_step(min(a, 1.0), k) for a in alpha],
        ":",
        color="gray",
        label="E[tokens per call] (S at c = 0)",
    )
    a2.axhline(1.0, color="gray", lw=1)
    a2.set(xlabel=name, ylabel="speedup over plain decoding", title=f"speedup vs similarity (k = {k}, T = 1)")
    a2.legend()
    c_mean = mean_std(cs)[0]
    grid_a = [i / 100 for i in range(101)]
    a3.plot(grid_a, [speedup(a, k, c_mean) for a in grid_a], "k-", label=f"S(alpha, k={k}, c={c_mean:.2f})")
    a3.errorbar(alpha, [m for m, _ in sp], yerr=[d for _, d in sp], fmt="o", capsize=4, label="measured drafts")
    a3.axhline(1.0, color="gray", lw=1)
    a3.set(xlabel="alpha (measured)", ylabel="speedup", title="theory curve and measured points")
    a3.legend()
    for a in (a1, a2, a3):
        a.grid(alpha=0.3)
    return _save(fig, out / "similarity.png")


def plot_exercises(ex: dict, grid_records: list[dict], ks, out: Path) -> Path:
    """Adaptive k vs fixed k, batches, K drafts as a tree and draft sizes, and the time profile."""
    plt = _plt()
    fig, ax = plt.subplots(2, 2, figsize=(14, 10))
    T = 1.0 if any(r["T"] == 1.0 for r in grid_records) else grid_records[0]["T"]
    fixed = [cell(grid_records, lambda r: r["speedup"], k=k, T=T) for k in ks]
    ad = cell(ex["adaptive"], lambda r: r["speedup"])
    labels = [f"k={k}" for k in ks] + ["adaptive"]
    ax[0, 0].bar(
        labels,
        [m for m, _ in fixed] + [ad[0]],
        yerr=[d for _, d in fixed] + [ad[1]],
        capsize=4,
        color=["tab:blue"] * len(ks) + ["tab:orange"],
    )
    ax[0, 0].axhline(1.0, color="gray", lw=1)
    ax[0, 0].set(ylabel="speedup over plain", title=f"adaptive lookahead vs fixed k (T = {T})")
    bs = ex["batches"]
    xs = range(len(bs))
    ax[0, 1].bar([x - 0.2 for x in xs], [b["plain_tok_s"] for b in bs], 0.4, label="plain")
    ax[0, 1].bar([x + 0.2 for x in xs], [b["spec_tok_s"] for b in bs], 0.4, label="speculative")
    ax[0, 1].set(
        xticks=list(xs),
        xticklabels=[str(b["batch"]) for b in bs],
        xlabel="batch size",
        ylabel="tokens / s (all rows)",
        title="batches (ragged rows, one target pass per step)",
    )
    ax[0, 1].legend()
    groups = [(r["tree"], r) for r in ex["trees"]] + [(r["label"], r) for r in ex["sizes"]]
    names = list(dict.fromkeys(g for g, _ in groups))
    tpc = [mean_std([tokens_per_call(r) for g, r in groups if g == n]) for n in names]
    spd = [mean_std([r["speedup"] for g, r in groups if g == n]) for n in names]
    xs = range(len(names))
    ax[1, 0].bar(
        [x - 0.2 for x in xs], [m for m, _ in tpc], 0.4, yerr=[d for _, d in tpc], capsize=3, label="tokens per call"
    )
    ax[1, 0].bar([x + 0.2 for x in xs], [m for m, _ in spd], 0.4, yerr=[d for _, d in spd], capsize=3, label="speedup")
    ax[1, 0].set(xticks=list(xs), title="K drafts verified as a tree; drafts of other sizes (chains)")
    ax[1, 0].set_xticklabels(names, rotation=20, ha="right")
    ax[1, 0].legend()
    prof = ex["profile"]["seconds"]
    ax[1, 1].bar(list(prof), [v * 1000 for v in prof.values()], color="tab:purple")
    w = ex["profile"]["weights_mb"]
    ax[1, 1].set(
        ylabel="ms",
        title=f"time per part ({ex['profile']['tokens']} tokens); weights: target "
        f"{w['target']:.0f} MB, draft {w['draft']:.0f} MB",
    )
    for a in ax.flat:
        a.grid(alpha=0.3)
    return _save(fig, out / "exercises.png")


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    _plt().close(fig)
    tmp.replace(path)
    return path
