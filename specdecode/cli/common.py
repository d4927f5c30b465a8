"""Arguments every command that loads a target shares (model, backend, device, precision), and the Builder
they make. One place, so the commands agree on names, defaults and help."""

from __future__ import annotations

import argparse

from ..core.sampling import SamplingConfig
from ..models.build import BACKENDS, CORPUS_TOKENS, DEFAULT_MODEL, Builder
from ..models.gguf import DEFAULT_FORMAT, FORMATS


def add_model_args(ap, default_model: str = DEFAULT_MODEL) -> None:
    ap.add_argument(
        "--model",
        default=default_model,
        help=f"target: a registry name, a local Hugging Face folder, or gguf:PATH with --backend llama.cpp "
        f"(default {default_model})",
    )
    ap.add_argument(
        "--backend",
        default="hf",
        choices=list(BACKENDS),
        help="hf: Hugging Face transformers on a torch device; llama.cpp: the model's GGUF through "
        "llama-cpp-python (pip install 'specdecode[llama]'); default hf",
    )
    ap.add_argument(
        "--device", default="cpu", help="torch device for --backend hf: cpu, cuda, cuda:N, mps (default cpu)"
    )
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="weights for --backend hf (default fp32)")
    ap.add_argument(
        "--gguf-format",
        default=None,
        choices=list(FORMATS),
        help=f"GGUF encoding for --backend llama.cpp: a copy of the same weights made once and cached beside "
        f"the original (default for smollm2-135m: {DEFAULT_FORMAT}; other GGUFs: as they are)",
    )


def builder_from(args) -> Builder:
    return Builder(
        args.model,
        args.dtype,
        backend=args.backend,
        device=args.device,
        gguf_format=args.gguf_format,
        prefix_cache=getattr(args, "prefix_cache", 0),
    )


def add_prefix_args(ap, default: int) -> None:
    ap.add_argument(
        "--prefix-cache",
        type=int,
        default=default,
        metavar="N",
        help="--backend llama.cpp: keep the KV cells (prompt and output) of the last N requests in host memory after "
        "they finish and reuse them for requests that start the same way (no prefill for the shared part; 0 = off; "
        f"default {default}). Reused cells sit out of position order, which moves llama.cpp's logits slightly (~1e-3): "
        "greedy near-ties may then break differently than in a fresh run",
    )


def prefix_cache(args) -> int:
    if not 0 <= args.prefix_cache <= 64:
        raise ValueError(f"--prefix-cache must be in [0, 64], got {args.prefix_cache}")
    return args.prefix_cache


def _numbers(text: str, kind, what: str) -> list:
    try:
        vals = [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        vals = []
    if not vals:
        raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}")
    return vals


def floats(text: str) -> list[float]:
    """argparse type: '0.4,0.3,0.3' -> [0.4, 0.3, 0.3]."""
    return _numbers(text, float, "numbers")


def float_rows(text: str) -> list[list[float]]:
    """argparse type: rows of numbers separated by ';' -> list of rows ('0.5,0.5;0.2,0.8')."""
    return [floats(row) for row in text.split(";") if row.strip()] or floats(text)


def ints(text: str) -> list[int]:
    """argparse type: '1,2,4' -> [1, 2, 4]."""
    return _numbers(text, int, "integers")


def add_bench_sampling_args(ap, temperature_help: str) -> None:
    """--temperature (default 0: greedy) and its filters, for the benches that compare runtimes sampling."""
    ap.add_argument("--temperature", type=float, default=0.0, help=temperature_help)
    ap.add_argument("--top-k", type=int, default=None, help="with --temperature: top-k")
    ap.add_argument("--top-p", type=float, default=None, help="with --temperature: top-p (nucleus)")
    ap.add_argument("--min-p", type=float, default=None, help="with --temperature: min-p")


def bench_sampling(args) -> SamplingConfig:
    """The settings ``add_bench_sampling_args``'s flags ask for; one line naming what is wrong."""
    if args.temperature == 0 and any(x is not None for x in (args.top_k, args.top_p, args.min_p)):
        raise ValueError("--top-k, --top-p and --min-p need --temperature > 0")
    return SamplingConfig(args.temperature, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p)


def add_corpus_args(ap) -> None:
    """The suffix drafter's shared corpus: its cap and the isolation switch."""
    ap.add_argument(
        "--corpus-tokens",
        type=int,
        default=CORPUS_TOKENS,
        help="--drafter suffix: tokens of earlier outputs kept to draft from, shared across requests (oldest "
        f"evicted first; default {CORPUS_TOKENS})",
    )
    ap.add_argument(
        "--no-shared-corpus",
        action="store_true",
        help="--drafter suffix: every request drafts from its own prompt and output only (nothing shared)",
    )


def corpus_tokens(args) -> int:
    """The corpus cap the flags ask for (0: not shared); one line naming the flag when out of range."""
    if not 0 <= args.corpus_tokens <= 2**24:
        raise ValueError(f"--corpus-tokens must be in [0, {2**24}], got {args.corpus_tokens}")
    return 0 if args.no_shared_corpus else args.corpus_tokens


def prompt_lines(path: str, flag: str) -> list[str]:
    """The non-empty lines of the UTF-8 text file ``path`` (one prompt each), or one clear error naming ``flag``."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = [ln.rstrip("\n") for ln in fh if ln.strip()]
    except OSError as exc:
        raise ValueError(f"cannot read {flag} {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{flag} {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not lines:
        raise ValueError(f"{flag} {path} has no prompts")
    return lines
