"""GGUF files for the llama.cpp backend: which file a model name means, same-weight copies in other formats
(llama.cpp's own quantizer with ``allow_requantize``), and a GGUF export of small Hugging Face Llamas (the
``tiny-llama`` models, so that tests and quick runs need no download).

Every file is written to a temporary name beside its destination and renamed when complete.
Not here: running a GGUF (``engine.llama_cpp``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import gguf
import numpy as np

from ..engine.llama_lib import require_llama_cpp
from .cache import cache_dir
from .registry import SMOLLM2, smollm2_gguf, tiny_seed
from .tiny import tiny_llama

# llama.cpp file types (enum llama_ftype) of the formats a copy can be made in
FORMATS = {"q4_1": 3, "q8_0": 7, "f16": 1, "bf16": 32, "q4_0": 2, "q4_k": 14, "iq4_nl": 25}
# The wheel ships Q4_1; its Q8_0 re-encoding (the same 4-bit values in 8 bits, weights within 0.4%) costs the
# same for one token and much less for a verify pass over several (README: T(n) per format), and its batched
# and one-token logits are bitwise identical. q4_0 measures faster still but re-quantizes the weights (lossy).
DEFAULT_FORMAT = "q8_0"


def gguf_path(name: str, fmt: str | None = None) -> Path:
    """A model name for the llama.cpp backend -> its GGUF file: ``smollm2-135m`` (the wheel's Q4_1 file, or a
    ``fmt`` copy of it), ``tiny-llama[:seed]`` (exported once), ``gguf:PATH`` or a path ending in .gguf."""
    if fmt is not None and fmt not in FORMATS:
        raise ValueError(f"--gguf-format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if name.startswith("gguf:") or name.endswith(".gguf"):
        path = Path(name[5:] if name.startswith("gguf:") else name).expanduser()
        if not path.is_file():
            raise ValueError(f"no GGUF file at {path}")
        return path if fmt is None else converted(path, fmt)
    if name == SMOLLM2:
        src = smollm2_gguf()
        return src if (fmt or DEFAULT_FORMAT) == "q4_1" else converted(src, fmt or DEFAULT_FORMAT)
    if name == "tiny-llama" or name.startswith("tiny-llama:"):
        seed = tiny_seed(name)
        path = cache_dir() / "gguf" / f"tiny-llama-{seed}.F32.gguf"
        if not path.exists():
            export_gguf(tiny_llama(seed), path)
        return path if fmt is None else converted(path, fmt)
    if Path(name).expanduser().is_dir():
        raise ValueError(
            f"{name} is a Hugging Face model folder: the llama.cpp backend takes a GGUF file "
            f"(--model gguf:PATH), or use --backend hf"
        )
    if name in ("toy-target", "toy-draft"):
        raise ValueError(f"{name} (the seed 001 toy family) has no GGUF form: use --backend hf")
    raise ValueError(f"unknown model {name!r} for the llama.cpp backend: use {SMOLLM2}, tiny-llama[:SEED] or gguf:PATH")


def converted(src: Path, fmt: str) -> Path:
    """A copy of ``src`` re-encoded as ``fmt`` (the same weights, requantized by llama.cpp), cached beside it."""
    L = require_llama_cpp()
    stem = src.name.split(".")[0]
    dst = src.with_name(f"{stem}.{fmt.upper()}.gguf")
    if dst.exists() or dst == src:
        return dst
    params = L.llama_model_quantize_default_params()
    params.ftype, params.allow_requantize, params.nthread = FORMATS[fmt], True, os.cpu_count() or 1
    fd, tmp = tempfile.mkstemp(prefix=".convert-", suffix=".gguf", dir=dst.parent)
    os.close(fd)
    try:
        if L.llama_model_quantize(str(src).encode(), tmp.encode(), params) != 0:
            raise ValueError(f"llama.cpp could not convert {src} to {fmt}")
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dst


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Hugging Face's rotary layout of q / k rows -> llama.cpp's (as convert_hf_to_gguf.py does)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def export_gguf(model, path: Path) -> Path:
    """A Hugging Face Llama (tied embeddings, float32) -> a GGUF file without a tokenizer (tokens are ids)."""
    cfg = model.config
    if cfg.model_type != "llama" or not cfg.tie_word_embeddings:
        raise ValueError("GGUF export covers Llama models with tied embeddings only")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".export-", suffix=".gguf", dir=path.parent)
    os.close(fd)
    try:
        w = gguf.GGUFWriter(tmp, "llama")
        _write_header(w, cfg)
        sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
        w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
        for i in range(cfg.num_hidden_layers):
            _write_layer(w, sd, i, cfg)
        w.add_tensor("output_norm.weight", sd["model.norm.weight"])
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _write_header(w, cfg) -> None:
    w.add_name("tiny-llama")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_file_type(0)
    w.add_tokenizer_model("none")


def _write_layer(w, sd: dict, i: int, cfg) -> None:
    p = f"model.layers.{i}."
    w.add_tensor(f"blk.{i}.attn_norm.weight", sd[p + "input_layernorm.weight"])
    w.add_tensor(f"blk.{i}.attn_q.weight", _permute(sd[p + "self_attn.q_proj.weight"], cfg.num_attention_heads))
    w.add_tensor(f"blk.{i}.attn_k.weight", _permute(sd[p + "self_attn.k_proj.weight"], cfg.num_key_value_heads))
    w.add_tensor(f"blk.{i}.attn_v.weight", sd[p + "self_attn.v_proj.weight"])
    w.add_tensor(f"blk.{i}.attn_output.weight", sd[p + "self_attn.o_proj.weight"])
    w.add_tensor(f"blk.{i}.ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
    w.add_tensor(f"blk.{i}.ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
    w.add_tensor(f"blk.{i}.ffn_up.weight", sd[p + "mlp.up_proj.weight"])
    w.add_tensor(f"blk.{i}.ffn_down.weight", sd[p + "mlp.down_proj.weight"])
