"""The plain-parity bench (``bench-backends --prompt-lengths``) without a real model: prompts cut from the prompt
set's text, every configuration at every length in a rotating order, the table's ratios, one-line refusals."""

import pytest

from specdecode.bench import parity
from specdecode.bench.backends import Config
from specdecode.cli import main


class _Words:
    def encode(self, text, chat=True):
        assert chat is False and len(text) > 5000  # the whole prompt set, no chat template
        return list(range(3000))


def _config(rate, log, name, tokens=None):
    def run(ids):
        log.append((name, len(ids)))
        toks = tokens or [7] * 8
        return len(toks) / rate, toks, None

    return Config(run, fresh=lambda: log.append((name, "fresh")))


def test_every_configuration_runs_every_length_in_a_rotating_order():
    log = []
    cfgs = {
        parity.BASE: _config(100.0, log, "base"),
        "ours": _config(95.0, log, "ours"),
        "fast": _config(200.0, log, "fast", tokens=[7] * 7 + [8]),
    }
    records = parity.run(_Words(), cfgs, [16, 300], repeats=2)
    assert len(records) == 12 and {r["length"] for r in records} == {16, 300}
    assert ("ours", 300) in log and log[:3] == [("base", 16), ("ours", 16), ("fast", 16)]  # the warm-up first
    assert log.count(("ours", "fresh")) == 4  # before each timed run
    firsts = [records[i]["config"] for i in (0, 3, 6, 9)]
    assert len(set(firsts)) > 1  # the order rotates between lengths and repeats
    table = parity.format_table(records, [16, 300], list(cfgs))
    ours = next(line for line in table.splitlines() if line.split()[:2] == ["16", "ours"])
    assert "0.950x" in ours and "True" in ours
    fast = next(line for line in table.splitlines() if line.split()[:2] == ["300", "fast"])
    assert "2.000x" in fast and fast.rstrip().endswith("False")


def test_a_length_past_the_text_is_refused():
    with pytest.raises(ValueError, match="at most 3000 tokens"):
        parity.run(_Words(), {parity.BASE: _config(1.0, [], "base")}, [16, 5000], repeats=1)


@pytest.mark.parametrize("lengths", ["x", "16,1", ",", "16;250"])
def test_bad_prompt_lengths_one_line(lengths, capsys):
    assert main(["bench-backends", "--prompt-lengths", lengths]) == 2
    err = capsys.readouterr().err.strip()
    assert "--prompt-lengths" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "argv,word",
    [
        (["--temperature", "0.8"], "--prompt-lengths"),  # the task sets compare greedy outputs
        (["--prompt-lengths", "16", "--top-p", "0.9"], "--temperature"),
        (["--prompt-lengths", "16", "--temperature", "0.8", "--top-p", "1.5"], "top_p"),
        (["--prompt-lengths", "16", "--temperature", "-1"], "temperature"),
    ],
)
def test_bad_sampling_flags_one_line(argv, word, capsys):
    assert main(["bench-backends", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert word in err and len(err.splitlines()) == 1


def test_a_sampled_table_does_not_compare_tokens():
    log = []
    cfgs = {parity.BASE: _config(100.0, log, "base"), "ours": _config(95.0, log, "ours", tokens=[9] * 8)}
    records = parity.run(_Words(), cfgs, [16], repeats=1)
    ours = next(
        line
        for line in parity.format_table(records, [16], list(cfgs), compare=False).splitlines()[1:]
        if "ours" in line
    )
    assert "0.950x" in ours and ours.rstrip().endswith("-")


def test_a_prompts_file_is_one_workload_of_its_lines(tmp_path):
    from specdecode.cli.bench_backends import add_args, workloads

    path = tmp_path / "mine.txt"
    path.write_text("First request\n\n  \nSecond request\n", encoding="utf-8")
    import argparse

    ap = argparse.ArgumentParser()
    add_args(ap)
    assert workloads(ap.parse_args(["--prompts-file", str(path)])) == {"mine.txt": ["First request", "Second request"]}
    assert list(workloads(ap.parse_args(["--tasks", "open"]))) == ["story", "chat"]


@pytest.mark.parametrize("content", [None, "", "\n \n"])
def test_a_missing_or_empty_prompts_file_one_line(tmp_path, content, capsys):
    path = tmp_path / "prompts.txt"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    assert main(["bench-backends", "--prompts-file", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--prompts-file" in err and len(err.splitlines()) == 1


def test_configs_keeps_the_named_ones_and_the_base():
    from specdecode.cli.bench_backends import choose

    cfgs = {parity.BASE: 1, "ours llama.cpp plain": 2, "ours llama.cpp suffix adaptive": 3, "llama-server plain": 4}
    assert list(choose(cfgs, None)) == list(cfgs)
    assert list(choose(cfgs, "suffix, llama-server")) == [
        parity.BASE,
        "ours llama.cpp suffix adaptive",
        "llama-server plain",
    ]
    with pytest.raises(ValueError, match="names no configuration; they are: llama-cpp-python plain, ours"):
        choose(cfgs, "hf")


def test_a_task_starts_with_no_kept_prompts_and_no_corpus():
    """Our configurations share one target: each task's first request must not find another configuration's
    prompts in its prefix cache (within a task, the cache and the corpus carry over, as in a batch job)."""
    pytest.importorskip("llama_cpp")
    from specdecode.bench.backends import ours_config
    from specdecode.models.build import Builder

    builder = Builder("tiny-llama:1", backend="llama.cpp", prefix_cache=8)
    cfg = ours_config(builder, "suffix", None, 4, True, 8)
    prompt = list(range(10, 60))
    cfg.run(prompt)
    cfg.run(prompt + [3])
    assert builder.target.prefix.reused >= 40 and builder.target.prefix.entries
    cfg.fresh()
    assert not builder.target.prefix.entries
