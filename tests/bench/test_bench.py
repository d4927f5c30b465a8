"""The bench sweep machinery on a tiny model: records, resume, report and plots."""

import json

import pytest

from specdecode.bench import run as bench_run
from specdecode.bench.report import write_report
from specdecode.bench.run import Config
from specdecode.prompts import CATEGORIES, TASKS


def test_task_suite():
    assert len(CATEGORIES) == 7 and all(len(v) == 10 for v in TASKS.values())


def test_sweep_resume_and_report(tmp_path):
    cfgs = [
        Config("none"),
        Config("hf"),
        Config("prompt-lookup", 2),
        Config("prompt-lookup", 4, True),
        Config("early-exit:1", 2),
        Config("prompt-lookup", 2, False, 0.8),
        Config("none", temperature=0.8),
        Config("hf-prompt-lookup"),
        Config("early-exit:1", 2, study="quality"),
        Config("none", batch=2),
        Config("prompt-lookup", 2, batch=2),
        Config("prompt-lookup", 2, False, 0.0, "rrs", tree="lookup:2"),
        Config("early-exit:1", 0, False, 0.8, "spectr", tree="static:2,1"),
    ]
    settings = {"prompts_per_task": 1, "max_new_tokens": 6}
    path = bench_run.run_sweep(tmp_path, True, "tiny-llama", "fp32", progress=False, configs=(cfgs, settings))
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    n = len(recs)
    assert n == 7 * 12 + 2  # the quality study runs on summarisation and story only
    b2 = [r for r in recs if r["batch"] == 2]
    assert len(b2) == 14 and all(r["tokens"] > 6 for r in b2)  # two rows of up to 6 tokens each
    assert all("tok_s" in r or "error" in r for r in recs)
    pl = [r for r in recs if r["drafter"] == "prompt-lookup" and not r["adaptive"] and not r["tree"]]
    assert all(0 <= r["alpha_counts"] <= 1 for r in pl)
    bench_run.run_sweep(tmp_path, True, "tiny-llama", "fp32", progress=False, configs=(cfgs, settings))
    assert len(path.read_text().splitlines()) == n  # resumed: nothing ran again
    md = write_report(path, tmp_path)
    text = md.read_text()
    assert "Best configuration per task" in text and "Theory check" in text and "Trees vs chains" in text
    trees = [r for r in recs if r.get("tree")]
    assert len(trees) == 14 and all(r["tokens"] >= 1 for r in trees)
    assert (tmp_path / "report.html").exists()
    assert list(tmp_path.glob("*.png"))


def test_sweep_on_ray_local_instance(tmp_path):
    """The same sweep on a local Ray instance (one actor, one model load) gives the same records."""
    pytest.importorskip("ray")
    cfgs = [Config("none"), Config("prompt-lookup", 2), Config("early-exit:1", 2)]
    settings = {"prompts_per_task": 1, "max_new_tokens": 5}
    local = bench_run.run_sweep(
        tmp_path / "local", True, "tiny-llama", "fp32", progress=False, configs=(cfgs, settings)
    )
    on_ray = bench_run.run_sweep(
        tmp_path / "ray", True, "tiny-llama", "fp32", progress=False, configs=(cfgs, settings), ray=True, ray_workers=1
    )
    a = {r["key"]: r for r in map(json.loads, local.read_text().splitlines())}
    b = {r["key"]: r for r in map(json.loads, on_ray.read_text().splitlines())}
    assert a.keys() == b.keys() and len(a) == 7 * 3
    assert all(a[k]["tokens"] == b[k]["tokens"] and a[k].get("accepted") == b[k].get("accepted") for k in a)
