"""bench-serve's request mix and summary (no servers started here; tests/serve covers the server)."""

import math

import pytest

from specdecode.bench.serve import format_table, llama_cpp_cmd, request_mix, summary


def test_mixes_alternate_or_keep_one_kind():
    assert [r["kind"] for r in request_mix(4, 8)] == ["grounded", "open", "grounded", "open"]
    for kind in ("grounded", "open"):
        reqs = request_mix(7, 8, kind)
        assert {r["kind"] for r in reqs} == {kind}
        assert len({str(r["messages"]) for r in reqs}) == 7  # distinct prompts, not one repeated
    with pytest.raises(ValueError, match="--mix"):
        request_mix(2, 8, "both")


def test_summary_and_table():
    recs = [{"ttft": 0.1 * i, "per_token": 0.01 * i, "tokens": 10} for i in range(1, 5)]
    s = summary(recs, wall=2.0)
    assert s["tokens"] == 40 and math.isclose(s["tok_s"], 20.0)
    assert math.isclose(s["ttft_p50"], 0.25) and math.isclose(s["tpt_p95"], 0.04)
    table = format_table([{"server": "x", "concurrency": 4, **s}])
    assert "20.0" in table.splitlines()[1]


def test_llama_cpp_server_does_not_cancel_running_requests():
    cmd = llama_cpp_cmd("m.gguf", 8000)
    assert cmd[cmd.index("--interrupt_requests") + 1] == "false" and "127.0.0.1" in cmd


def test_each_server_is_asked_for_the_same_sampling_and_nothing_more():
    from specdecode.bench.serve import sampling_fields
    from specdecode.core.sampling import GREEDY, SamplingConfig

    assert sampling_fields("ours", GREEDY) == {"temperature": 0.0}
    s = SamplingConfig(0.8, top_k=40, top_p=0.95, min_p=0.05)
    assert sampling_fields("ours", s) == {"temperature": 0.8, "top_p": 0.95, "extra_body": {"top_k": 40, "min_p": 0.05}}
    assert sampling_fields("ours", SamplingConfig(0.8)) == {"temperature": 0.8}
    # llama.cpp's servers fill what a request leaves out with top-k 40, top-p 0.95, min-p 0.05 (and llama-cpp-python
    # a repeat penalty of 1.1): their neutral values are sent
    off = {"temperature": 0.8, "top_p": 1.0, "extra_body": {"top_k": 0, "min_p": 0.0}}
    assert sampling_fields("llama-server", SamplingConfig(0.8)) == off
    lcp = sampling_fields("llama-cpp-python", GREEDY)
    assert lcp["extra_body"]["repeat_penalty"] == 1.0 and lcp["temperature"] == 0.0
    assert sampling_fields("llama-server", s)["extra_body"] == {"top_k": 40, "min_p": 0.05}
    with pytest.raises(ValueError, match="dialect"):
        sampling_fields("vllm", s)
    assert {r["sampling"] for r in request_mix(3, 8, "mixed", s)} == {s}


@pytest.mark.parametrize(
    "argv,word",
    [(["--top-p", "0.9"], "--temperature"), (["--temperature", "0.8", "--min-p", "2"], "min_p")],
)
def test_bench_serve_sampling_flags_refuse_bad_input_in_one_line(argv, word, capsys):
    from specdecode.cli import main

    assert main(["bench-serve", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and word in err[0], err
