"""The seed 002 / 003 / 004 functions as commands: step-sim, candidates, rho, simulate --show-probs; demo on toys."""

import re

import pytest

from specdecode.cli import main

Q = "0.5,0.5,0;0.2,0.3,0.5"
P = "0.3,0.3,0.4;0.1,0.1,0.8;1,0,0"


def test_step_sim_one_step_and_many(capsys):
    assert main(["step-sim", "--q", Q, "--p", P, "--tokens", "0,2"]) == 0
    assert '"num_draft_accepted"' in capsys.readouterr().out
    assert main(["step-sim", "--q", Q, "--p", P, "--runs", "40000", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    freq = {int(m[0]): float(m[1]) for m in re.findall(r"^\s+(\d): ([0-9.]+)\s+p =", out, re.M)}
    assert abs(freq[0] - 0.3) < 0.015 and abs(freq[2] - 0.4) < 0.015  # the first emitted token follows p


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--q", Q, "--p", P, "--tokens", "2,2"], "--tokens[0] = 2 has q = 0"),
        (["--q", Q, "--p", "0.3,0.3,0.4", "--tokens", "0,2"], "--p needs 2 rows"),
        (["--q", "0.5,0.6,0;0.2,0.3,0.5", "--p", P], "--q row 0"),
        (["--q", Q, "--p", P, "--runs", "0"], "--runs"),
    ],
)
def test_step_sim_refuses_bad_input(capsys, argv, needle):
    assert main(["step-sim", *argv]) == 2
    assert needle in capsys.readouterr().err


def test_rho_matches_the_theory(capsys):
    assert main(["rho", "--p", "0.4,0.3,0.2,0.1", "--q", "0.1,0.2,0.3,0.4", "-K", "1,2"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^\s+1\s+1\.00000\s+0\.60000\s+0\.60000\s+0\.60000", out, re.M)
    assert re.search(r"^\s+2\s+1\.50000\s+0\.75000", out, re.M)
    assert main(["rho", "--p", "0.5,0.5", "--q", "1,0,0"]) == 2


def test_candidates_greedy_are_identical(capsys):
    assert main(["candidates", "--model", "tiny-llama", "hello", "-K", "3", "-k", "3", "--temperature", "0"]) == 0
    lines = [ln.split("tokens")[1] for ln in capsys.readouterr().out.splitlines()[1:]]
    assert len(lines) == 3 and len(set(lines)) == 1
    assert main(["candidates", "--model", "tiny-llama", "hello", "-K", "0"]) == 2


def test_simulate_show_probs_shows_the_draw_that_decided(capsys):
    assert main(["simulate", "-k", "4", "--show-probs", "3", "--check-steps", "0"]) == 0
    out = capsys.readouterr().out
    assert "ANALYSIS" in out
    rows = re.findall(r"^\s+\d+\s+\S+\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)\s+(✓|✗|-)", out, re.M)
    assert len(rows) == 12
    for q, p, a, u, verdict in rows:
        assert abs(float(a) - min(1.0, float(p) / float(q))) < 2e-4
        if verdict != "-":
            assert (verdict == "✓") == (float(u) < float(a))
    assert main(["simulate", "--show-probs", "-1"]) == 2


@pytest.mark.parametrize("model", ["toy-target", "toy-draft", "toy-similar:0.9"])
def test_demo_runs_on_the_toy_models(capsys, model):
    assert main(["demo", "--model", model, "--max-new-tokens", "6"]) == 0
    assert "output identical to plain greedy: True" in capsys.readouterr().out
