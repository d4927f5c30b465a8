"""specdecode study on a tiny plan: every experiment runs through the engine, every plot and the summary are written."""

import dataclasses
import math

import pytest
import torch

from specdecode.bench import study as S
from specdecode.bench import study_plots as P
from specdecode.bench import study_report as R
from specdecode.cli import main
from specdecode.models.toy import similar_draft, toy_pair


def test_similar_draft_interpolates_the_targets_weights():
    _, target = toy_pair()
    same = similar_draft(target, 1.0, 6)
    x = torch.randint(0, 1000, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(same(x), target(x))  # s = 1 with every layer is the target itself
    half = similar_draft(target, 0.5, 2)
    w, d = target.token_embedding.weight.detach().flatten(), half.token_embedding.weight.detach().flatten()
    corr = float(torch.corrcoef(torch.stack([w, d]))[0, 1])
    assert abs(corr - 0.5) < 0.02 and abs(float(d.std() / w.std()) - 1) < 0.02
    assert len(half.transformer.layers) == 2
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="similarity"):
            similar_draft(target, bad)
    with pytest.raises(ValueError, match="layers"):
        similar_draft(target, 0.5, 7)


def test_plan_names_are_checked():
    with pytest.raises(ValueError, match="--model must be toy or smollm2-135m"):
        S.plan_for("gpt2", quick=True)
    with pytest.raises(SystemExit) as exc:  # argparse's choices
        main(["study", "--model", "gpt2"])
    assert exc.value.code == 2


@pytest.fixture(scope="module")
def tiny_study():
    plan = dataclasses.replace(
        S.plan_for("toy", quick=True),
        ks=(2, 3),
        temps=(1.0,),
        trials=2,
        new_tokens=8,
        similarity=((0.0, "model:toy-similar:0"), (1.0, "model:toy-similar:1")),
        sizes=(("1 layer", "model:toy-similar:1:1"),),
        trees=("static:2,1",),
        batches=(1, 2),
        rejection_steps=6,
    )
    st = S.Study(plan)
    return st, S.headline(st), S.grid(st), S.rejections(st), S.similarity(st), S.exercises(st)


def test_every_experiment_counts_right(tiny_study):
    st, head, grid, rej, sim, ex = tiny_study
    assert len(grid) == 2 * 2 and all(r["tokens"] == 8 for r in grid)
    for r in grid + sim + [head]:
        assert r["accepted"] <= r["proposed"] and r["speedup"] > 0
        assert r["row_steps"] <= r["tokens"] <= r["accepted"] + r["row_steps"]  # the last step may be cut
        assert 0 <= r["alpha"] <= 1
    assert rej["steps"] >= 6 and sum(rej["hist"]) + rej["all_accepted"] <= rej["steps"]
    low, high = (P.cell(sim, lambda r: r["alpha"], similarity=s)[0] for s in (0.0, 1.0))
    assert low < 0.2 < 0.6 < high  # an unrelated draft vs the target's own first layers
    assert {b["batch"] for b in ex["batches"]} == {1, 2} and ex["trees"] and ex["sizes"] and ex["adaptive"]
    assert set(ex["profile"]["seconds"]) == {"prefill", "draft", "target", "verify and rest"}
    peaks = ex["profile"]["peak_mb"]
    assert {"target prefill", "draft pass (1 token)", "verification"} <= set(peaks) and all(
        v >= 0 for v in peaks.values()
    )


def test_plots_and_summary_are_written(tiny_study, tmp_path):
    st, head, grid, rej, sim, ex = tiny_study
    p = st.plan
    files = [
        P.plot_grid(grid, p.ks, p.temps, tmp_path),
        P.plot_speedup(grid, p.ks, p.temps, tmp_path),
        P.plot_rejections(rej, 0.7, tmp_path),
        P.plot_similarity(sim, "s", 4, tmp_path),
        P.plot_exercises(ex, grid, p.ks, tmp_path),
    ]
    for f in files:
        assert f.exists() and f.read_bytes()[:4] == b"\x89PNG"
    assert not list(tmp_path.glob("*.tmp*"))
    md = (
        R.headline_lines(head)
        + R.grid_lines(grid, p.ks, p.temps)
        + R.rejection_lines(rej)
        + R.similarity_lines(sim, "s", 4)
        + R.exercise_lines(ex, grid, p.ks, 4)
        + R.tradeoff_lines(grid, sim, ex, p.ks)
        + R.summary_report_lines(grid, rej, sim, p.ks)
    )
    text = "\n".join(md)
    for heading in ("Rejection patterns", "Draft similarity", "Exercises", "Trade-offs", "Summary report"):
        assert heading in text
    assert "nan" not in text.replace("n/a", "")


def test_rejection_stats():
    st = P.rejection_stats({"hist": [3, 1, 0, 2]})
    assert st["count"] == 6 and math.isclose(st["mean"], (0 * 3 + 1 + 3 * 2) / 6) and st["median"] == 0.5
    assert st["mode"] == 0
    assert P.rejection_stats({"hist": [0, 0]})["count"] == 0


def test_position_rates_split_cumulative_and_conditional():
    # the engine counts position i accepted only when 1..i-1 were: accepted / proposed is cumulative
    cum, cond = P.position_rates({"pos_accepted": [8, 4, 2], "pos_proposed": [10, 10, 10]})
    assert cum == pytest.approx([0.8, 0.4, 0.2]) and cond == pytest.approx([0.8, 0.5, 0.5])
