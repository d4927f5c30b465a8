"""`specdecode generate --json-schema FILE | --json-object | --regex PATTERN` on a tiny model, on both backends where
llama.cpp is installed, and bad constraints refused in one line (exit 2)."""

import json
import re

import pytest

from specdecode.cli import main

PATTERN = "AB(C|D){2,6}E[0-9]{2}"


@pytest.mark.parametrize("backend", ["hf", "llama.cpp"])
@pytest.mark.parametrize("drafter", ["prompt-lookup", "suffix"])
def test_generate_with_a_regex_matches_it(backend, drafter, capsys):
    if backend == "llama.cpp":
        pytest.importorskip("llama_cpp")
    argv = ["generate", "--model", "tiny-llama", "--backend", backend, "--drafter", drafter, "--no-chat", "ABCD"]
    assert main([*argv, "--regex", PATTERN, "--max-new-tokens", "40", "--adaptive", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    out = rec["outputs"][0]
    text = "".join(chr(t) for t in out["tokens"] if t < 95)  # 95: the grammar's end of sequence for 96 tokens
    assert re.fullmatch(PATTERN, text) and out["finish_reason"] == "eos", out
    assert main([*argv, "--regex", PATTERN, "--max-new-tokens", "40", "-k", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["outputs"][0]["tokens"] == out["tokens"]  # == constrained plain


def test_generate_with_a_json_schema_file(tmp_path, capsys):
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"enum": ["AB", "CD"]}))  # a JSON string: quotes are byte 34, inside 96 tokens
    assert main(["generate", "--model", "tiny-llama", "--no-chat", "x", "--json-schema", str(schema), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)["outputs"][0]
    assert json.loads(bytes(t for t in out["tokens"] if t != 95).decode()) in ("AB", "CD")  # 95: the grammar's end


@pytest.mark.parametrize(
    "extra,word",
    [
        (["--regex", "a(b"], "--regex: invalid regex"),
        (["--json-schema", "/nonexistent.json"], "cannot read --json-schema"),
        (["--json-object"], "allows no first token"),  # "{" is byte 123: outside tiny-llama's 96 tokens
    ],
)
def test_bad_constraints_one_line(extra, word, capsys):
    code = main(["generate", "--model", "tiny-llama", "--no-chat", "x", *extra])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and word in err[0], err


def test_two_constraints_are_refused_in_one_line(capsys):
    with pytest.raises(SystemExit) as exc:  # argparse's mutually exclusive group
        main(["generate", "--model", "tiny-llama", "x", "--regex", "A", "--json-object"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not allowed with argument --regex" in err[0], err


def test_a_bad_schema_file_names_it(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "objectx"}')
    assert main(["generate", "--model", "tiny-llama", "--no-chat", "x", "--json-schema", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.json" in err[0] and "objectx" in err[0], err


def test_bench_structured_refuses_unknown_configurations(capsys):
    assert main(["bench-structured", "--configs", "fast"]) == 2
    assert "unknown" in capsys.readouterr().err
