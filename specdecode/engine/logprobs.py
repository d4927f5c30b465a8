"""Log-probabilities of the emitted tokens, read from the verification pass: for each token, the distribution it
was drawn from (the target's at the node before it on the accepted path), so the numbers are the ones plain
decoding would report at the same position.

Which distribution: a sampled row reports the warped one it samples from (temperature, top-k, top-p; masked first
when constrained): log p_c(token), with -inf for tokens the warping removed. A greedy row's warped distribution is
one-hot, so it reports the model's own softmax at temperature 1 (masked when constrained), as OpenAI and vLLM do.

Not here: the response formats (``serve.openai_api``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.sampling import SamplingConfig, logits_to_probs

TOP_MAX = 20  # alternatives per token at most (OpenAI's top_logprobs range)


@dataclass(frozen=True)
class TokenLogprob:
    token: int
    logprob: float
    top: tuple  # ((token, logprob), ...) most probable first; empty unless asked for


def token_logprobs(logits: torch.Tensor, tokens: list[int], sampling: SamplingConfig, top: int) -> list[TokenLogprob]:
    """logits [n, V]: the pass's (masked) logits at the positions the n emitted ``tokens`` were drawn from ->
    their log-probabilities and the ``top`` most probable alternatives at each."""
    if sampling.is_greedy:
        logp = torch.log_softmax(logits.double(), dim=-1)
    else:
        logp = torch.log(logits_to_probs(logits.double(), sampling))
    chosen = logp.gather(1, torch.tensor(tokens, device=logp.device)[:, None])[:, 0].tolist()
    alts: list[tuple] = [() for _ in tokens]
    if top:
        vals, idx = logp.topk(min(top, logp.shape[-1]), dim=-1)
        alts = [tuple(zip(i, v)) for i, v in zip(idx.tolist(), vals.tolist())]
    return [TokenLogprob(int(t), float(lp), a) for t, lp, a in zip(tokens, chosen, alts)]
