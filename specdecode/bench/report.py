"""The bench report: markdown + HTML tables and PNG plots from the JSONL records.

Speedups are ratios to our plain decoding (and to HF) on the same prompt and temperature, from
the same run. For fixed k, measured tokens per target call is checked against
(1 - alpha^(k+1)) / (1 - alpha) with alpha = accepted / checked drafts; a configuration is
flagged when they differ by more than 3 standard errors (+0.05). Not here: running anything.
"""

from __future__ import annotations

import html
import json
import statistics
from collections import defaultdict
from pathlib import Path

from .run import short_drafter


def load(path: Path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _med(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def _mean(xs):
    xs = [x for x in xs if x == x]
    return sum(xs) / len(xs) if xs else float("nan")


def attach_ratios(recs: list[dict]) -> None:
    base = {
        (r["task"], r["prompt_id"], r["temperature"], r["drafter"], r.get("batch", 1)): r for r in recs if "tok_s" in r
    }
    for r in recs:
        if "tok_s" not in r:
            continue
        b = r.get("batch", 1)
        plain = base.get((r["task"], r["prompt_id"], r["temperature"], "none", b))  # plain at the same batch size
        hf = base.get((r["task"], r["prompt_id"], r["temperature"], "hf", 1)) if b == 1 else None
        pld = base.get((r["task"], r["prompt_id"], 0.0, "hf-prompt-lookup", 1)) if b == 1 else None
        r["vs_plain"] = r["tok_s"] / plain["tok_s"] if plain else float("nan")
        r["vs_hf"] = r["tok_s"] / hf["tok_s"] if hf else float("nan")
        r["vs_hf_pld"] = r["tok_s"] / pld["tok_s"] if pld and r["temperature"] == 0 else float("nan")
        r.setdefault("batch", 1)
        if "predicted_tokens_per_call" in r:
            tol = 3 * r.get("g_se", float("inf")) + 0.05
            r["theory_ok"] = abs(r["tokens_per_call"] - r["predicted_tokens_per_call"]) <= tol


def summary_rows(recs: list[dict]) -> list[dict]:
    groups = defaultdict(list)
    for r in recs:
        if "tok_s" in r and r["study"] == "sweep":
            groups[(r["task"], r["label"], r["temperature"])].append(r)
    rows = []
    for (task, label, T), rs in sorted(groups.items()):
        flags = [r.get("theory_ok") for r in rs if "theory_ok" in r]
        rows.append(
            {
                "task": task,
                "config": label,
                "T": T,
                "n": len(rs),
                "tok_s": _med([r["tok_s"] for r in rs]),
                "vs_plain": _med([r["vs_plain"] for r in rs]),
                "vs_hf": _med([r["vs_hf"] for r in rs]),
                "vs_hf_pld": _med([r["vs_hf_pld"] for r in rs]),
                "alpha": _mean([r.get("alpha_counts", float("nan")) for r in rs]),
                "alpha_exact": _mean([r.get("alpha_exact", float("nan")) for r in rs]),
                "tok_call": _mean([r.get("tokens_per_call", float("nan")) for r in rs]),
                "pred_tok_call": _mean([r.get("predicted_tokens_per_call", float("nan")) for r in rs]),
                "c": _mean([r.get("c", float("nan")) for r in rs]),
                "S_pred": _mean([r.get("predicted_speedup", float("nan")) for r in rs]),
                "theory": "-" if not flags else ("ok" if all(flags) else f"FLAG {flags.count(False)}/{len(flags)}"),
            }
        )
    return rows


def best_per_task(rows: list[dict]) -> list[dict]:
    best = {}
    for r in rows:
        if r["config"].startswith(("plain", "hf")) or "batch=" in r["config"] or r["vs_plain"] != r["vs_plain"]:
            continue
        key = (r["task"], r["T"])
        if key not in best or r["vs_plain"] > best[key]["vs_plain"]:
            best[key] = r
    return [best[k] for k in sorted(best)]


def _fmt(v, spec=".2f"):
    return "-" if isinstance(v, float) and v != v else format(v, spec)


def _x(v):
    return "-" if isinstance(v, float) and v != v else f"{v:.2f}x"


def write_report(records_path: Path, out_dir: Path) -> Path:
    recs = load(records_path)
    attach_ratios(recs)
    rows = summary_rows(recs)
    plots = make_plots(recs, out_dir)
    md = _header(recs) + _best_section(rows) + _batch_section(recs) + _tree_section(rows) + _all_section(rows)
    md += _theory_section(rows) + _quality_section(recs)
    errors = [r for r in recs if "error" in r]
    if errors:
        md += ["", "## Baselines that could not run", ""] + sorted({f"- {r['label']}: {r['error']}" for r in errors})
    md += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    md_path = out_dir / "report.md"
    md_path.write_text("\n".join(md) + "\n")
    (out_dir / "report.html").write_text(markdown_to_html(md))
    return md_path


def _header(recs: list[dict]) -> list[str]:
    return [
        "# specdecode bench report",
        "",
        f"model: {recs[0]['model'] if recs else '?'} ({recs[0]['dtype'] if recs else ''}), {len(recs)} records, "
        f"{'quick' if recs and recs[0]['quick'] else 'full'} sweep; load average seen: "
        f"{min(r['load1'] for r in recs):.2f}-{max(r['load1'] for r in recs):.2f} (2 cores)."
        if recs
        else "no records",
        "",
        "Speedups are tokens/s ratios on the same prompt and temperature in the same run: vs our plain decoding, vs HF "
        "`generate`, and (T = 0) vs HF prompt lookup. alpha = accepted / checked drafts; alpha exact = mean sum min(p, "
        "q) "
        "at the checked positions, from the logits. Theory: tokens per call vs (1 - alpha^(k+1)) / (1 - alpha).",
    ]


def _best_section(rows: list[dict]) -> list[str]:
    md = [
        "",
        "## Best configuration per task",
        "",
        "| task | T | configuration | speedup vs plain | vs HF | vs HF prompt lookup | tok/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in best_per_task(rows):
        md.append(
            f"| {r['task']} | {r['T']:g} | {r['config']} | {_x(r['vs_plain'])} | {_x(r['vs_hf'])} | "
            f"{_x(r['vs_hf_pld'])} | {_fmt(r['tok_s'], '.1f')} |"
        )
    return md


def _batch_section(recs: list[dict]) -> list[str]:
    batched = [r for r in recs if r.get("batch", 1) > 1 and r.get("drafter") != "none" and "tok_s" in r]
    if not batched:
        return []
    tasks = sorted({r["task"] for r in batched})
    md = [
        "",
        "## Batches (our engine, ragged acceptance; speedup vs plain decoding at the same batch size)",
        "",
        "| configuration | batch | " + " | ".join(tasks) + " |",
        "|---|---|" + "---|" * len(tasks),
    ]
    single = {
        (r["task"], r["drafter"], r["k"], r["adaptive"]): r
        for r in recs
        if r.get("batch", 1) == 1 and r.get("temperature") == 0 and r.get("study") == "sweep" and "tok_s" in r
    }
    for key in sorted({(r["drafter"], r["k"], r["adaptive"]) for r in batched}):
        for b in (1, 2, 4):
            cells = []
            for t in tasks:
                if b == 1:
                    rr = single.get((t,) + key)
                else:
                    rr = next(
                        (
                            r
                            for r in batched
                            if r["task"] == t and (r["drafter"], r["k"], r["adaptive"]) == key and r["batch"] == b
                        ),
                        None,
                    )
                cells.append(_x(rr["vs_plain"]) if rr else "-")
            md.append(f"| {key[0]} k={'adaptive' if key[2] else key[1]} | {b} | " + " | ".join(cells) + " |")
    return md


def _tree_section(rows: list[dict]) -> list[str]:
    trees = [r for r in rows if " tree " in r["config"]]
    if not trees:
        return []
    md = [
        "",
        "## Trees vs chains (same drafter; one target pass verifies the whole tree)",
        "",
        "Prompt-lookup trees merge up to M n-gram matches (k tokens each) into a prefix tree: lookup:4 with k=4 "
        "and lookup:2 with k=8 put at most 16 tokens in the verify pass, against the k=8 chain's 9. Trained drafts "
        "(EAGLE heads or shallow models) grow static:3,1,1 trees (9 nodes) against their k=4 chain.",
        "",
        "| task | T | configuration | tokens/call | tok/s | vs plain |",
        "|---|---|---|---|---|---|",
    ]
    for t, T in sorted({(r["task"], r["T"]) for r in trees}):
        for r in rows:
            if r["task"] != t or r["T"] != T:
                continue
            c = r["config"]
            is_chain = (
                c == "prompt-lookup k=8 tokenwise"
                or (c.startswith("early-exit") and c.endswith("k=2 tokenwise"))
                or (c.startswith("model:") and c.endswith("k=4 tokenwise"))
            )
            if r in trees or is_chain:
                md.append(
                    f"| {t} | {T:g} | {c} | {_fmt(r['tok_call'])} | {_fmt(r['tok_s'], '.1f')} | {_x(r['vs_plain'])} |"
                )
    return md


def _all_section(rows: list[dict]) -> list[str]:
    md = [
        "",
        "## All configurations",
        "",
        "| task | T | configuration | runs | tok/s | vs plain | vs HF | vs HF PLD | alpha | alpha exact | tok/call | "
        "predicted "
        "| c | S theory | theory check |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['task']} | {r['T']:g} | {r['config']} | {r['n']} | {_fmt(r['tok_s'], '.1f')} | "
            f"{_fmt(r['vs_plain'])} | "
            f"{_fmt(r['vs_hf'])} | {_fmt(r['vs_hf_pld'])} | {_fmt(r['alpha'])} | {_fmt(r['alpha_exact'])} | "
            f"{_fmt(r['tok_call'])} | {_fmt(r['pred_tok_call'])} | {_fmt(r['c'], '.3f')} | {_fmt(r['S_pred'])} | "
            f"{r['theory']} |"
        )
    return md


def _theory_section(rows: list[dict]) -> list[str]:
    flagged = [r for r in rows if r["theory"].startswith("FLAG")]
    md = [
        "",
        f"## Theory check: {len(flagged)} of {sum(1 for r in rows if r['theory'] != '-')} fixed-k configurations "
        f"flagged",
        "",
    ]
    if flagged:
        md.append(
            "Flagged configurations disagree with the i.i.d.-acceptance formula beyond 3 standard errors. Prompt "
            "lookup "
            "is the usual culprit: its acceptance is bursty (a copied span is accepted whole), not i.i.d. per token."
        )
        md += [
            f"- {r['task']} T={r['T']:g} {r['config']}: measured {_fmt(r['tok_call'])} vs predicted "
            f"{_fmt(r['pred_tok_call'])}"
            for r in flagged
        ]
    return md


def _quality_section(recs: list[dict]) -> list[str]:
    quality = [r for r in recs if r.get("study") == "quality" and "tok_s" in r]
    if not quality:
        return []
    md = [
        "",
        "## Draft quality (early exit depth, trained drafts -> alpha and speedup, T = 0, k = 2)",
        "",
        "| drafter | alpha | alpha exact | speedup vs plain |",
        "|---|---|---|---|",
    ]
    by = defaultdict(list)
    for r in quality:
        by[r["drafter"]].append(r)

    def order(d):
        if d.startswith("early-exit:"):
            return (0, int(d[11:]), "")
        steps = by[d][0].get("draft_steps")
        return (1, steps if steps is not None else 1 << 30, d)

    for d, rs in sorted(by.items(), key=lambda kv: order(kv[0])):
        steps = rs[0].get("draft_steps")
        md.append(
            f"| {short_drafter(d)}{f' ({steps} training steps)' if steps is not None else ''} | "
            f"{_fmt(_mean([r['alpha_counts'] for r in rs]))} | {_fmt(_mean([r['alpha_exact'] for r in rs]))} | "
            f"{_x(_med([r['vs_plain'] for r in rs]))} |"
        )
    return md


def markdown_to_html(md_lines: list[str], title: str = "specdecode bench") -> str:
    """The small markdown subset the reports write (headings, pipe tables, images, ``` blocks, paragraphs) -> HTML."""
    out = [
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}img{max-width:100%}</style>",
    ]
    in_table = in_code = False
    for line in md_lines:
        if line.startswith("```"):
            out.append("</pre>" if in_code else "<pre>")
            in_code = not in_code
            continue
        if in_code:
            out.append(html.escape(line))
            continue
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set("".join(cells)) <= set("-"):
                continue
            if not in_table:
                out.append("<table>")
                in_table = True
                out.append("<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cells) + "</tr>")
            else:
                out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            out.append("</table>")
            in_table = False
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{html.escape(line.lstrip('# '))}</h{level}>")
        elif line.startswith("!["):
            src = line[line.index("(") + 1 : -1]
            out.append(f"<img src='{html.escape(src)}'>")
        elif line.strip():
            out.append(f"<p>{html.escape(line)}</p>")
    if in_table:
        out.append("</table>")
    return "\n".join(out)


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
            [_mean([r["alpha_counts"] for r in pl if r["k"] == k and r["temperature"] == T]) for k in ks],
            "o-",
            label=f"T={T:g}",
        )
        ax[1].plot(
            ks,
            [_med([r["vs_plain"] for r in pl if r["k"] == k and r["temperature"] == T]) for k in ks],
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
    grid = [
        [_mean([r["alpha_counts"] for r in pl if r["k"] == k and r["temperature"] == T]) for k in ks] for T in temps
    ]
    im = ax.imshow(grid, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(ks)), [str(k) for k in ks])
    ax.set_yticks(range(len(temps)), [f"{T:g}" for T in temps])
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            ax.text(j, i, _fmt(v, ".2f"), ha="center", va="center", color="w", fontsize=8)
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
            vals.append(max((_med(v) for v in by_label.values()), default=float("nan")))
        ax.bar([i + j * w for i in range(len(tasks))], vals, w, label=short_drafter(d))
    ax.axhline(1, color="k", lw=1)
    ax.set_xticks([i + 0.4 - w / 2 for i in range(len(tasks))], tasks)
    ax.set(ylabel="best speedup vs plain (T=0)", title="Speedup per task and drafter (best k)")
    ax.legend(fontsize=8)
    save(fig, "speedup_per_task.png")
