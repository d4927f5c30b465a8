"""`specdecode audit`: calibration under the null on a fast simulated endpoint (the false-alarm rate of 200 small
audits within the binomial band of alpha), power against planted total-variation offsets, resuming from the
samples file, and for real against our own server on a tiny model: speculation passes, the lossy `typical` method
is caught, greedy text compared; bad arguments and an unreachable endpoint exit 2 with one line."""

import json
import math

import numpy as np
import pytest

from specdecode.bench import audit
from specdecode.cli import main

OUTCOMES = [("a", "b"), ("a", "c"), ("b", "a"), ("c", "c"), ("d", "a"), ("e", "e")]
P = np.array([0.35, 0.25, 0.2, 0.1, 0.07, 0.03])


class Simulated:
    """An endpoint drawing its outcome from ``probs`` and reporting ``reported`` first-token probabilities."""

    def __init__(self, probs, seed, reported=None):
        self.probs, self.rng, self.reported, self.calls = np.asarray(probs), np.random.default_rng(seed), reported, 0

    def complete(self, prompt, tokens, sampling):
        self.calls += 1
        out = OUTCOMES[self.rng.choice(len(OUTCOMES), p=self.probs)]
        return audit.Reply(out[:tokens], "".join(out), self.reported)


def shifted(tv):
    """P with ``tv`` of its mass moved from the first outcome to the last."""
    q = P.copy()
    q[0] -= tv
    q[-1] += tv
    return q


def test_false_alarms_under_the_null_stay_in_the_binomial_band(tmp_path):
    alpha, runs = 0.05, 200
    alarms = sum(
        not audit.run_audit(
            Simulated(P, 2 * i),
            Simulated(P, 2 * i + 1),
            ["x"],
            40,
            2,
            {"temperature": 1.0},
            tmp_path / str(i),
            1,
            alpha,
        ).consistent
        for i in range(runs)
    )
    sd = math.sqrt(runs * alpha * (1 - alpha))
    assert runs * alpha - 3.3 * sd <= alarms <= runs * alpha + 3.3 * sd, alarms  # 99.9% band: 1..20


def test_power_against_planted_offsets(tmp_path):
    n, alpha = 300, 0.01
    first = audit.run_audit(Simulated(P, 0), Simulated(P, 1), ["x"], n, 2, {"temperature": 1}, tmp_path / "a", 1, alpha)
    tv = first.verdicts[0].detectable  # what this N promises to find 90% of the time (worst case)
    assert 0.05 < tv < 0.3
    found = sum(
        not audit.run_audit(
            Simulated(P, 10 + i),
            Simulated(shifted(tv), 50 + i),
            ["x"],
            n,
            2,
            {"temperature": 1},
            tmp_path / f"b{i}",
            1,
            alpha,
        ).consistent
        for i in range(20)
    )
    assert found >= 16, found  # >= 90% expected; 16 of 20 leaves room for chance
    assert (
        not audit.run_audit(
            Simulated(P, 3), Simulated(shifted(0.02), 4), ["x"], 40, 2, {"temperature": 1}, tmp_path / "c", 1, alpha
        )
        .verdicts[0]
        .two.p_value
        < 1e-6
    )


def test_one_sample_catches_reports_that_samples_do_not_follow(tmp_path):
    """The tested endpoint's samples against what it reports; counted only where the reference passes the same
    check (a server that reports another distribution than it samples, with or without speculation, is noted)."""
    honest = {"a": 0.6, "b": 0.2, "c": 0.1, "d": 0.07, "e": 0.03}
    lying = {"a": 0.4, "b": 0.4, "c": 0.1, "d": 0.07, "e": 0.03}
    for test, ref, ok in ((honest, honest, True), (lying, honest, False), (lying, lying, True)):
        where = tmp_path / f"{test is lying}{ref is lying}"
        a = audit.run_audit(
            Simulated(P, 5, test), Simulated(P, 6, ref), ["x"], 400, 2, {"temperature": 1}, where, 1, 0.01
        )
        v = a.verdicts[0]
        assert v.one is not None and v.one_ref is not None and a.consistent == ok
        assert (v.one.p_value < 1e-6) == (test is lying)


def test_an_interrupted_audit_resumes_from_its_samples(tmp_path):
    test, ref = Simulated(P, 1), Simulated(P, 2)
    audit.run_audit(test, ref, ["x", "y"], 20, 2, {"temperature": 1}, tmp_path, 2, 0.01)
    lines = (tmp_path / "samples.jsonl").read_text().splitlines()
    (tmp_path / "samples.jsonl").write_text("\n".join(lines[:-5]) + '\n{"side": "te')  # killed mid-line
    test.calls = ref.calls = 0
    a = audit.run_audit(test, ref, ["x", "y"], 30, 2, {"temperature": 1}, tmp_path, 2, 0.01)
    assert test.calls + ref.calls == 2 * 2 * 10 + 5 and all(v.n_test == v.n_ref == 30 for v in a.verdicts)


# ------------------------------------------------------------------ for real, against our server

pytest.importorskip("uvicorn")


@pytest.fixture(scope="module")
def ours():
    from serving import start  # tests/serving.py

    from specdecode.models import Builder

    uv, thread, url, _ = start(Builder("tiny-llama"), "prompt-lookup", max_batch=8)
    yield url + "/v1"
    uv.should_exit = True
    thread.join(timeout=10)


def _audit(url, tmp_path, *extra, samples="300"):
    argv = ["audit", "--endpoint", url, "--model", "tiny-llama", "--prompt", "abc abc abc abc", "--tokens", "2"]
    return main([*argv, "--samples", samples, "--concurrency", "8", "--out", str(tmp_path), *extra])


def test_our_server_passes_and_typical_acceptance_is_caught(ours, tmp_path, capsys):
    ref = ["--reference-params", '{"k": 0}']
    assert _audit(ours, tmp_path / "spec", "--params", '{"k": 4}', *ref) == 0
    out = capsys.readouterr().out
    assert out.startswith("CONSISTENT") and "detects TV" in out
    report = (tmp_path / "spec" / "report.md").read_text()
    assert "G-test" in report and (tmp_path / "spec" / "outcomes.png").exists()
    assert (tmp_path / "spec" / "reported.png").exists()
    assert "(no top_logprobs)" not in report  # our server reports them: the one-sample check ran too
    assert _audit(ours, tmp_path / "typical", "--params", '{"k": 4, "method": "typical"}', *ref) == 1
    assert capsys.readouterr().out.startswith("NOT CONSISTENT")


def test_greedy_mode_compares_text(ours, tmp_path, capsys):
    assert _audit(ours, tmp_path, "--temperature", "0", "--params", '{"k": 4}', "--reference-params", '{"k": 0}') == 0
    assert "greedy text differs on 0 of 1" in capsys.readouterr().out
    rows = [json.loads(x) for x in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and rows[0]["text"] == rows[1]["text"]


@pytest.mark.parametrize(
    "extra,word",
    [
        (["--samples", "5"], "--samples"),
        (["--tokens", "0"], "--tokens"),
        (["--alpha", "0.9"], "--alpha"),
        (["--endpoint", "http://127.0.0.1:9/v1"], "cannot reach"),
    ],
)
def test_bad_arguments_and_an_unreachable_endpoint_exit_2(ours, tmp_path, capsys, extra, word):
    argv = ["audit", "--endpoint", ours, "--model", "tiny-llama", "--prompt", "x", "--out", str(tmp_path), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and word in err[0], err


def test_params_must_be_a_json_object(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["audit", "--endpoint", "http://x/v1", "--model", "m", "--prompt", "x", "--params", "[1]"])
    assert exc.value.code == 2 and "JSON object" in capsys.readouterr().err
