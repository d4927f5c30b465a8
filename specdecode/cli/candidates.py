"""``specdecode candidates``: seed 003's ``get_k_candidates``, K i.i.d. draft sequences of length k from a model."""

from __future__ import annotations

import torch

from ..analysis.candidates import get_k_candidates
from ..core.sampling import SamplingConfig
from ..core.validation import check_int
from ..engine import CausalLM
from .common import add_model_args, builder_from

NAME = "candidates"
HELP = "seed 003: K i.i.d. draft sequences of length k from a model (get_k_candidates), with their q"
DESCRIPTION = (
    "Draws K draft sequences of k tokens each from --model after the prompt (as a draft model would: one "
    "forward per depth, a static tree K,1,...,1) and prints each sequence's text and the probability q of "
    "each of its tokens. At temperature 0 all K are the same greedy chain (seed 003's observation)."
)


def add_args(ap) -> None:
    add_model_args(ap, default_model="tiny-llama")
    ap.add_argument("prompt", help="the text the candidates continue")
    ap.add_argument("-k", type=int, default=4, help="tokens per candidate (default 4)")
    ap.add_argument("-K", type=int, default=3, help="number of candidates (default 3)")
    ap.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    ap.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    check_int("-k", args.k, 1, 64)
    check_int("-K", args.K, 1, 64)
    sampling = SamplingConfig(args.temperature)
    builder = builder_from(args)
    if not isinstance(builder.target, CausalLM):
        raise ValueError("candidates runs on the Hugging Face backend: leave --backend at hf")
    seq = builder.encode(args.prompt)
    ids, probs = get_k_candidates(
        builder.target, seq, args.k, args.K, sampling, torch.Generator().manual_seed(args.seed)
    )
    tok = builder.tokenizer
    print(f"{args.K} candidates of {args.k} tokens from {args.model} at T = {args.temperature}:")
    for i, (chain, q) in enumerate(zip(ids, probs)):
        qs = ", ".join(f"{float(q[j, t]):.3f}" for j, t in enumerate(chain))
        print(f"  {i}: {tok.decode(chain, skip_special_tokens=True)!r}  tokens {chain}  q = [{qs}]")
    return 0
