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
