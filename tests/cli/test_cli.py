import json
import subprocess
import sys

import pytest

from specdecode.cli import main


def test_simulate_output(capsys):
    assert (
        main(
            [
                "simulate",
                "--draft-length",
                "5",
                "--target-length",
                "50",
                "--acceptance-rate",
                "0.75",
                "--draft-cost",
                "0.1",
                "--seed",
                "42",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "formula (1 - a^(k+1))/(1 - a) = 3.288" in out
    assert "Bonus tokens" in out and "k = 5 per step" in out


def test_simulate_short_flags_and_errors(capsys):
    assert main(["simulate", "-k", "3", "-n", "20", "-a", "0.8"]) == 0
    assert main(["simulate", "-a", "1.5"]) == 2
    assert "--acceptance-rate" in capsys.readouterr().err


def test_exactness_json_subset(capsys):
    assert main(["exactness", "--json", "--method", "tokenwise"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["passed"] and all(r["max_abs_error"] < 1e-12 for r in rec["methods"])


def test_distribution_and_plot(tmp_path, capsys):
    png = tmp_path / "d.png"
    assert main(["distribution", "--samples", "20000", "--plot", str(png)]) == 0
    assert png.stat().st_size > 1000
    assert "max |exact - p|" in capsys.readouterr().out
    assert main(["distribution", "--p", "0.5,0.6", "--q", "0.5,0.5"]) == 2


def test_generate_json_tiny(capsys):
    assert (
        main(
            [
                "generate",
                "--model",
                "tiny-llama",
                "--drafter",
                "model:tiny-llama:2",
                "-k",
                "3",
                "--max-new-tokens",
                "8",
                "--no-chat",
                "--json",
                "hello",
            ]
        )
        == 0
    )
    rec = json.loads(capsys.readouterr().out)
    assert len(rec["outputs"][0]["tokens"]) == 8 and rec["stats"]["new_tokens"] == 8


def test_generate_batch_file_and_show_drafts(tmp_path, capsys):
    f = tmp_path / "p.txt"
    f.write_text("abc abc abc\nxyz\n")
    assert (
        main(
            [
                "generate",
                "--model",
                "tiny-llama",
                "--drafter",
                "prompt-lookup",
                "--batch-file",
                str(f),
                "--max-new-tokens",
                "6",
                "--no-chat",
                "--show-drafts",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "prompt 1" in out and "legend" in out


@pytest.mark.parametrize(
    "argv,word",
    [
        (["generate", "--model", "nope", "x"], "unknown model"),
        (["generate", "--model", "tiny-llama", "--drafter", "magic", "x"], "unknown drafter"),
        (["generate", "--model", "tiny-llama", "-k", "65", "x"], "-k"),
        (["generate", "--model", "tiny-llama", "--no-chat", "   "], "empty"),
        (["generate", "--model", "tiny-llama", "--drafter", "model:toy-draft", "x"], "vocabulary"),
        (["generate", "--model", "tiny-llama", "--drafter", "early-exit:9", "x"], "early-exit"),
        (["generate", "--model", "tiny-llama", "--drafter", "prompt-lookup", "--tree", "static:2", "x"], "lookup:M"),
        (["generate", "--model", "tiny-llama", "--batch-file", "/nonexistent/p.txt"], "batch-file"),
        (["generate", "--model", "/nonexistent/model/dir", "x"], "unknown model"),
    ],
)
def test_generate_bad_input_one_line(argv, word, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and word in err[0]


def test_help_runs():
    out = subprocess.run([sys.executable, "-m", "specdecode", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "exactness" in out.stdout and "generate" in out.stdout


def test_bench_bad_out(capsys, tmp_path):
    assert main(["bench", "--out", "/proc/specdecode-not-writable", "--report-only"]) == 2
    assert "writable" in capsys.readouterr().err
    assert main(["bench", "--out", str(tmp_path), "--report-only"]) == 2
    assert "no records" in capsys.readouterr().err
