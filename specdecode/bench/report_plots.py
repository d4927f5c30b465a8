"""The bench report's PNG plots from the JSONL records (acceptance per position, k x temperature heat map,
rejection positions, predicted vs measured tokens per call, speedup per task).

Not here: the tables and the markdown / HTML (``report``), running anything."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

from .run import short_drafter


def med(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def mean(xs):
    xs = [x for x in xs if x == x]
    return sum(xs) / len(xs) if xs else float("nan")


def fmt(v, spec=".2f"):
    return "-" if isinstance(v, float) and v != v else format(v, spec)


def make_plots(recs: list[dict], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths: list[Path] = []

    def save(fig, name):
        p = out_dir / name
        fig.tight_layout()
        fig.savefig(p, dpi=100)
        plt.close(fig)
        paths.append(p)

    pl = [
        r
        for r in recs
        if r.get("drafter") == "prompt-lookup"
        and not r.get("adaptive")
        and "alpha_counts" in r
        and r["study"] == "sweep"
    ]
    if pl:
        _plot_acceptance(plt, pl, save)
        _plot_heatmap(plt, pl, save)
        _plot_rejections(plt, pl, save)
    pred = [r for r in recs if "predicted_speedup" in r and "vs_plain" in r and r["vs_plain"] == r["vs_plain"]]
    if pred:
        _plot_predicted(plt, pred, save)
    sp = [
        r
        for r in recs
        if r.get("study") == "sweep"
        and r.get("drafter") not in ("none",)
        and "vs_plain" in r
        and r["vs_plain"] == r["vs_plain"]
        and r.get("temperature") == 0
        and r.get("batch", 1) == 1
    ]
    if sp:
        _plot_per_task(plt, sp, save)
    return paths


def _axes(pl: list[dict]) -> tuple[list, list]:
    return sorted({r["temperature"] for r in pl}), sorted({r["k"] for r in pl})


def _plot_acceptance(plt, pl, save) -> None:
    temps, ks = _axes(pl)
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for T in temps:
        ax[0].plot(
            ks,
            [mean([r["alpha_counts"] for r in pl if r["k"] == k and r["temperature"] == T]) for k in ks],
            "o-",
            label=f"T={T:g}",
        )
        ax[1].plot(
            ks,
            [med([r["vs_plain"] for r in pl if r["k"] == k and r["temperature"] == T]) for k in ks],
            "s-",
            label=f"T={T:g}",
        )
    ax[0].set(xlabel="draft length k", ylabel="acceptance (accepted / checked)", title="Prompt lookup: acceptance vs k")
    ax[1].set(xlabel="draft length k", ylabel="speedup vs plain", title="Prompt lookup: speedup vs k")
    for a in ax:
        a.grid(alpha=0.3)
        a.legend()
    save(fig, "acceptance_vs_k.png")


def _plot_heatmap(plt, pl, save) -> None:
    temps, ks = _axes(pl)
    fig, ax = plt.subplots(figsize=(7, 3 + 0.3 * len(temps)))
    grid = [[mean([r["alpha_counts"] for r in pl if r["k"] == k and r["temperature"] == T]) for k in ks] for T in temps]
    im = ax.imshow(grid, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(ks)), [str(k) for k in ks])
    ax.set_yticks(range(len(temps)), [f"{T:g}" for T in temps])
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            ax.text(j, i, fmt(v, ".2f"), ha="center", va="center", color="w", fontsize=8)
    ax.set(xlabel="draft length k", ylabel="temperature", title="Acceptance heatmap (prompt lookup)")
    fig.colorbar(im)
    save(fig, "acceptance_heatmap.png")


def _plot_rejections(plt, pl, save) -> None:
    temps, ks = _axes(pl)
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    kmax = max(ks)
    hist = [0] * kmax
    for r in pl:
        if r["k"] == kmax:
            for i, c in enumerate(r["rejection_positions"]):
                hist[i] += c
    ax[0].bar(range(kmax), hist)
    ax[0].set(
        xlabel="draft position of the rejection", ylabel="count", title=f"Rejection positions (prompt lookup, k={kmax})"
    )
    for T in temps:
        rs = [r for r in pl if r["k"] == kmax and r["temperature"] == T]
        prop = [
            sum(r["per_position_proposed"][i] if i < len(r["per_position_proposed"]) else 0 for r in rs)
            for i in range(kmax)
        ]
        acc = [
            sum(r["per_position_accepted"][i] if i < len(r["per_position_accepted"]) else 0 for r in rs)
            for i in range(kmax)
        ]
        ax[1].plot(
            range(1, kmax + 1), [a / p if p else float("nan") for a, p in zip(acc, prop)], "o-", label=f"T={T:g}"
        )
    ax[1].set(xlabel="draft position", ylabel="P(accepted)", title="Per-position acceptance")
    ax[1].legend()
    save(fig, "rejections_and_positions.png")


def _plot_predicted(plt, pred, save) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for d in sorted({r["drafter"] for r in pred}):
        rs = [r for r in pred if r["drafter"] == d]
        ax.scatter([r["predicted_speedup"] for r in rs], [r["vs_plain"] for r in rs], label=short_drafter(d), s=14)
    lim = max(max(r["predicted_speedup"] for r in pred), max(r["vs_plain"] for r in pred)) * 1.05
    ax.plot([0, lim], [0, lim], "k--", lw=1)
    ax.set(xlabel="predicted S(alpha, k, c)", ylabel="measured speedup vs plain", title="Measured vs predicted speedup")
    ax.legend()
    save(fig, "measured_vs_predicted.png")


def _plot_per_task(plt, sp, save) -> None:
    tasks = sorted({r["task"] for r in sp})
    drafters = sorted({r["drafter"] for r in sp})
    fig, ax = plt.subplots(figsize=(11, 4))
    w = 0.8 / len(drafters)
    for j, d in enumerate(drafters):
        vals = []
        for t in tasks:
            by_label = defaultdict(list)
            for r in sp:
                if r["task"] == t and r["drafter"] == d:
                    by_label[r["label"]].append(r["vs_plain"])
            vals.append(max((med(v) for v in by_label.values()), default=float("nan")))
        ax.bar([i + j * w for i in range(len(tasks))], vals, w, label=short_drafter(d))
    ax.axhline(1, color="k", lw=1)
    ax.set_xticks([i + 0.4 - w / 2 for i in range(len(tasks))], tasks)
    ax.set(ylabel="best speedup vs plain (T=0)", title="Speedup per task and drafter (best k)")
    ax.legend(fontsize=8)
    save(fig, "speedup_per_task.png")
