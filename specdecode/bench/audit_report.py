"""The audit's report: ``report.md`` (the verdict, every prompt's test with its p-value and the power statement,
N and the wall time) and ``outcomes.png`` (observed frequencies of the endpoint under test against the reference
per outcome, and the standardized residuals) for the prompt with the smallest p-value, and ``reported.png``
(the tested endpoint's first tokens against the probabilities it reported) where it reports them.

Not here: sampling or the statistics (``audit``, ``analysis.homogeneity``).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .audit import Audit, PromptVerdict  # noqa: E402

TOP_OUTCOMES = 12


def summary(a: Audit) -> str:
    """One line: the verdict and why."""
    word = "CONSISTENT" if a.consistent else "NOT CONSISTENT"
    if a.mode == "greedy":
        bad = sum(v.greedy_diverges_at is not None for v in a.verdicts)
        return f"{word}: greedy text differs on {bad} of {len(a.verdicts)} prompts ({a.seconds:.0f} s)"
    worst = min(a.tests, key=lambda t: t.p_value)
    n = max(v.n_test for v in a.verdicts)
    tv = max(v.detectable for v in a.verdicts)
    return (
        f"{word}: smallest p-value {worst.p_value:.3g} ({worst.method}) against alpha {a.alpha} / {len(a.tests)} "
        f"checks; N = {n} per side detects TV >= {tv:.3f} with 90% probability ({a.seconds:.0f} s)"
    )


def write(a: Audit, out_dir: Path, header: str) -> Path:
    lines = [f"# specdecode audit\n\n{header}\n\n**{summary(a)}**\n"]
    if a.mode == "greedy":
        lines += ["| prompt | identical | first difference (characters in) |", "| --- | --- | --- |"]
        lines += [
            f"| {_short(v.prompt)} | {v.greedy_diverges_at is None} | {v.greedy_diverges_at or '-'} |"
            for v in a.verdicts
        ]
    else:
        lines += [
            "| prompt | N test / ref | test | cells | statistic | df | p-value | detectable TV (90%) "
            "| reported vs sampled p: test / reference |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for v in a.verdicts:
            one = " / ".join(f"{x.p_value:.3g}" if x else "-" for x in (v.one, v.one_ref))
            one = one if v.one or v.one_ref else "- (no top_logprobs)"
            t = v.two
            lines.append(
                f"| {_short(v.prompt)} | {v.n_test} / {v.n_ref} | {t.method} | {t.cells} | {t.statistic:.2f} | {t.df} "
                f"| {t.p_value:.3g} | {v.detectable:.3f} | {one} |"
            )
        lines.append(
            "\nOutcome: the first generated tokens. Detectable TV: the smallest total-variation distance between the "
            "two outcome distributions that this N finds with probability 0.9 at the prompt's level, worst case over "
            "how the difference spreads (noncentral chi-square). Reported vs sampled: the first token's counts against "
            "the probabilities the endpoint reported (G-test); it counts towards the verdict only where the reference "
            "passes it too (servers that report raw logits but sample after top-k / min-p fail it either way). "
            "Prompts and checks combined by Bonferroni."
        )
        worst = min((v for v in a.verdicts if v.two), key=lambda v: v.two.p_value)
        plot(worst, out_dir / "outcomes.png")
        lines.append("\n![outcomes](outcomes.png)")
        reported = [v for v in a.verdicts if v.one is not None and v.reported]
        if reported:
            plot_reported(min(reported, key=lambda v: v.one.p_value), out_dir / "reported.png")
            lines.append("\n![first token: reported vs sampled](reported.png)")
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def plot(v: PromptVerdict, path: Path) -> None:
    """Observed frequencies per outcome, endpoint under test vs reference, and the standardized residuals."""
    test, ref = v.counts["test"], v.counts["reference"]
    keys = sorted(set(test) | set(ref), key=lambda k: -(test[k] + ref[k]))[:TOP_OUTCOMES]
    ft = [test[k] / max(1, v.n_test) for k in keys]
    fr = [ref[k] / max(1, v.n_ref) for k in keys]
    pooled = [(test[k] + ref[k]) / max(1, v.n_test + v.n_ref) for k in keys]
    resid = [
        (a - b) / max(1e-12, (p * (1 - p) * (1 / max(1, v.n_test) + 1 / max(1, v.n_ref))) ** 0.5)
        for a, b, p in zip(ft, fr, pooled)
    ]
    title = f"prompt: {_short(v.prompt, 60)} (p = {v.two.p_value:.3g})"
    _figure(path, title, ["".join(k) for k in keys], ("endpoint under test", ft), ("reference", fr), resid)


def plot_reported(v: PromptVerdict, path: Path) -> None:
    """The tested endpoint's first tokens: observed frequency vs the probability it reported, and residuals."""
    firsts = v.counts["first"]
    keys = list(v.reported)[:TOP_OUTCOMES]
    observed = [firsts[k] / max(1, v.n_test) for k in keys]
    expected = [v.reported[k] for k in keys]
    resid = [(o - e) * v.n_test / max(1e-12, (e * v.n_test) ** 0.5) for o, e in zip(observed, expected)]
    title = f"first token, reported vs sampled: {_short(v.prompt, 40)} (p = {v.one.p_value:.3g})"
    _figure(path, title, keys, ("observed", observed), ("reported", expected), resid)


def _figure(path: Path, title: str, names: list[str], left: tuple, right: tuple, resid: list[float]) -> None:
    """Two bar series per outcome (label, values) above their standardized residuals."""
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    xs = range(len(names))
    ax1.bar([x - 0.2 for x in xs], left[1], 0.4, label=left[0])
    ax1.bar([x + 0.2 for x in xs], right[1], 0.4, label=right[0])
    ax1.set_ylabel("frequency")
    ax1.legend()
    ax1.set_title(title)
    ax2.bar(xs, resid, 0.6, color="grey")
    ax2.axhline(2, ls="--", c="r", lw=0.8)
    ax2.axhline(-2, ls="--", c="r", lw=0.8)
    ax2.set_ylabel("standardized residual")
    shown = [_short(n.encode("unicode_escape").decode("ascii"), 14) for n in names]  # control bytes shown
    ax2.set_xticks(list(xs), shown, rotation=45, ha="right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _short(text: str, n: int = 40) -> str:
    text = " ".join(str(text).split()).replace("|", "/")
    return text if len(text) <= n else text[: n - 3] + "..."
