"""Issue I: stop strings cut where plain decoding stops, crash-safe records, clean caches, strict inputs — each
through the CLI as a user types it, or through the Python API."""

import errno
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from specdecode.cli import main
from specdecode.core.sampling import SamplingConfig, logits_to_probs, sample, warp_logits
from specdecode.engine import GenerationConfig, SpeculativeGenerator
from specdecode.models import fetch, registry, tiny_llama
from specdecode.models.cache import CACHE_ENV
from specdecode.verify import greedy_verify


def _gen(capsys, *argv):
    assert main(["generate", "--model", "tiny-llama", "--max-new-tokens", "40", "--json", *argv]) == 0
    return json.loads(capsys.readouterr().out)["outputs"][0]


# 1. stop strings ------------------------------------------------------------------------------------------------


def test_stop_string_output_is_the_same_for_every_draft_length(capsys):
    plain = _gen(capsys, "--stop", "UUU", "-k", "0", "hi")
    assert plain["finish_reason"] == "stop" and plain["text"].endswith("UUU")
    for extra in (
        ["-k", "4"],
        ["-k", "8"],
        ["-k", "4", "--adaptive"],
        ["--drafter", "model:tiny-llama", "-k", "6"],
        ["--drafter", "model:tiny-llama", "--tree", "static:2,2,2"],
    ):
        out = _gen(capsys, "--stop", "UUU", *extra, "hi")
        assert out["tokens"] == plain["tokens"] and out["text"] == plain["text"], extra


def test_an_empty_stop_string_is_refused(capsys):
    assert main(["generate", "--model", "tiny-llama", "--stop", "", "hi"]) == 2
    assert "stop" in capsys.readouterr().err


# 2. crash-safe records --------------------------------------------------------------------------------------------


def test_a_torn_last_record_is_dropped_on_resume(tmp_path, capsys):
    from specdecode.bench import run as bench_run
    from specdecode.bench.run import Config

    cfgs = ([Config("none"), Config("prompt-lookup", 2)], {"prompts_per_task": 1, "max_new_tokens": 4})
    path = bench_run.run_sweep(tmp_path, True, "tiny-llama", "fp32", progress=False, configs=cfgs)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])  # a crash mid-record
    bench_run.run_sweep(tmp_path, True, "tiny-llama", "fp32", progress=False, configs=cfgs)
    assert "dropped a record cut by an interruption" in capsys.readouterr().err
    recs = [json.loads(x) for x in path.read_text().splitlines()]  # every line whole again
    assert len(recs) == len(lines) and len({r["key"] for r in recs}) == len(lines)


# 3-5. caches ------------------------------------------------------------------------------------------------------


def test_an_interrupted_fetch_leaves_nothing_and_stale_folders_are_swept(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))

    def interrupted(*a, **k):
        raise KeyboardInterrupt  # what SIGTERM becomes in the CLI

    monkeypatch.setattr(subprocess, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        registry.smollm2_dir(progress=False)
    assert list(tmp_path.iterdir()) == []
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f".fetch-{dead.pid}-abc").mkdir()  # left by a process killed before it could clean up
    (tmp_path / f".fetch-{os.getpid()}-mine").mkdir()
    fetch.sweep_stale(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [f".fetch-{os.getpid()}-mine"]


def test_sigterm_during_a_fetch_removes_its_folder(tmp_path):
    """The real thing: a CLI process killed with SIGTERM while `pip download` runs."""
    env = {**os.environ, CACHE_ENV: str(tmp_path)}
    fake_pip = tmp_path.parent / "slowpip"
    fake_pip.mkdir(exist_ok=True)
    (fake_pip / "sitecustomize.py").write_text(
        "import subprocess, time\n_real = subprocess.run\n"
        "def run(cmd, *a, **k):\n    if 'download' in cmd:\n        time.sleep(60)\n    return _real(cmd, *a, **k)\n"
        "subprocess.run = run\n"
    )
    env["PYTHONPATH"] = str(fake_pip) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen(
        [sys.executable, "-m", "specdecode", "generate", "hi"], env=env, stderr=subprocess.PIPE, text=True
    )
    for _ in range(200):
        if list(tmp_path.glob(".fetch-*")):
            break
        import time

        time.sleep(0.1)
    assert list(tmp_path.glob(".fetch-*")), "the fetch did not start"
    proc.terminate()
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130 and "interrupted" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "exc,word",
    [
        (OSError(errno.ENOSPC, "No space left on device"), "disk is full"),
        (PermissionError(errno.EPERM, "Operation not permitted"), "not permitted"),
    ],
)
def test_os_errors_during_a_fetch_are_one_line(monkeypatch, tmp_path, exc, word):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))

    def failing(*a, **k):
        raise exc

    monkeypatch.setattr(registry, "_fetch_gguf", failing)
    with pytest.raises(ValueError, match=word):
        registry.smollm2_dir(progress=False)
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_cache_root_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv(CACHE_ENV, "/proc/specdecode-cache")
    assert main(["generate", "hi"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cache" in err[0]


def test_corrupted_cached_weights_are_refused(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    folder = tmp_path / registry.SMOLLM2
    tiny_llama(0).save_pretrained(folder)
    fetch.record_checksums(folder, [registry.WEIGHTS])
    fetch._VERIFIED.clear()
    assert registry.load_model(registry.SMOLLM2) is not None
    weights = folder / registry.WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-4000:-2000] = bytes(2000)  # zero a stretch of the weights
    weights.write_bytes(bytes(data))
    fetch._VERIFIED.clear()  # a new process
    with pytest.raises(ValueError, match="corrupt"):
        registry.load_model(registry.SMOLLM2)


# 4, 9. CLI input ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv,word",
    [
        (["--seed", str(1 << 70), "hi"], "--seed"),
        (["--seed", "-1", "hi"], "--seed"),
        (["--batch-file", "PROMPTS", "hi"], "not both"),
        (["--batch-file", "LATIN1"], "UTF-8"),
        (["--temperature", "0.8", "--min-p", "1.5", "hi"], "min_p"),
    ],
)
def test_cli_inputs_one_line(argv, word, tmp_path, capsys):
    (tmp_path / "p.txt").write_text("a\nb\n")
    (tmp_path / "l.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    argv = [
        str(tmp_path / "p.txt") if a == "PROMPTS" else str(tmp_path / "l.txt") if a == "LATIN1" else a for a in argv
    ]
    assert main(["generate", "--model", "tiny-llama", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and word in err[0], err
    if word == "UTF-8":
        assert "l.txt" in err[0]


def test_min_p_is_passed_to_the_sampling(capsys):
    argv = ["generate", "--model", "tiny-llama", "--temperature", "0.8", "--top-k", "5", "--min-p", "0.1", "--json"]
    assert main([*argv, "--drafter", "prompt-lookup", "--max-new-tokens", "6", "abc abc abc"]) == 0
    assert "min_p=0.1" in json.loads(capsys.readouterr().out)["sampling"]


def test_no_future_warnings_reach_users(capsys):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert (
            main(["generate", "--model", "tiny-llama", "--drafter", "early-exit:1", "--max-new-tokens", "6", "hi"]) == 0
        )
        assert (
            main(
                [
                    "generate",
                    "--model",
                    "tiny-llama",
                    "--drafter",
                    "model:tiny-llama:2",
                    "--tree",
                    "static:2",
                    "--max-new-tokens",
                    "6",
                    "hi",
                ]
            )
            == 0
        )
    assert not [w for w in seen if issubclass(w.category, (FutureWarning, DeprecationWarning))], [
        str(w.message) for w in seen
    ]


# 6. any model in the sweep ------------------------------------------------------------------------------------------


def test_the_sweep_follows_the_models_layer_count():
    from specdecode.bench.run import early_exit_depths, sweep
    from specdecode.models import Builder

    assert early_exit_depths(30, (2 / 3,)) == [20] and early_exit_depths(2, (1 / 3, 2 / 3, 0.87)) == [1]
    b = Builder("tiny-llama")
    cfgs, _ = sweep(True, layers=b.target.num_layers)
    for c in cfgs:
        if not c.drafter.startswith("hf"):
            b.drafter(c.drafter, c.tree or None)  # every drafter of the sweep can be built for a 2-layer model
    assert not [c for c in sweep(True, layers=0)[0] if "early-exit" in c.drafter]


# 7. the Python API --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("probs", [torch.tensor([0.5, float("nan")]), torch.zeros(3), torch.tensor([0.7, -0.2, 0.5])])
def test_sample_refuses_bad_probabilities(probs):
    with pytest.raises(ValueError, match="probs"):
        sample(probs, torch.Generator())


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("T", [0.0, 1.0])
def test_logits_with_nan_or_inf_are_refused(bad, T):
    logits = torch.tensor([[1.0, bad, 0.0]])
    with pytest.raises(ValueError, match="NaN"):
        logits_to_probs(logits, SamplingConfig(T))
    with pytest.raises(ValueError, match="-inf"):
        logits_to_probs(torch.full((1, 3), float("-inf")), SamplingConfig(T))
    assert logits_to_probs(torch.tensor([[0.0, float("-inf"), 1.0]]), SamplingConfig(T))[0, 1] == 0


def test_greedy_verify_refuses_nan():
    p = torch.zeros(1, 3, 4)
    p[0, 1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        greedy_verify(p, None, torch.zeros(1, 2, dtype=torch.long))


@pytest.mark.parametrize(
    "kwargs,err,word",
    [
        (dict(stop_strings="HC"), TypeError, "stop_strings"),
        (dict(adaptive="no"), TypeError, "adaptive"),
        (dict(eos_token_ids=5), TypeError, "eos_token_ids"),
        (dict(sampling=None), TypeError, "sampling"),
        (dict(stop_strings=("",)), ValueError, "stop_strings"),
    ],
)
def test_generation_config_checks_at_construction(kwargs, err, word):
    with pytest.raises(err, match=word):
        GenerationConfig(**kwargs)


def test_sampling_config_types():
    with pytest.raises(TypeError, match="temperature"):
        SamplingConfig(temperature=True)
    with pytest.raises(ValueError, match="finite"):
        SamplingConfig(temperature=float("inf"))
    cfg = SamplingConfig(np.float32(0.5), top_p=np.float64(0.9))
    assert cfg.temperature == 0.5 and isinstance(cfg.temperature, float) and cfg.top_p == 0.9


def test_generate_refuses_a_flat_prompt():
    from specdecode.engine import CausalLM

    gen = SpeculativeGenerator(CausalLM(tiny_llama(1)))
    with pytest.raises(TypeError, match="list of token ids"):
        gen.generate([1, 2, 3], GenerationConfig(), torch.Generator())


def test_top_p_keeps_the_same_tied_tokens_as_hugging_face():
    from transformers.generation.logits_process import TopPLogitsWarper

    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        logits = torch.randint(0, 4, (3, 12), generator=g).float()  # many exact ties
        for top_p in (0.3, 0.5, 0.8):
            ours = warp_logits(logits, SamplingConfig(1.0, top_p=top_p))
            hf = TopPLogitsWarper(top_p)(None, logits.clone())
            assert torch.equal(ours == float("-inf"), hf == float("-inf"))
