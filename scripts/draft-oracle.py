"""How fast could match-based drafting be on a bench task, with this machine's pass costs? Two ceilings, next to
what our adaptive drafters get (docs/backends.md, issue L's goals).

    .venv/bin/python scripts/draft-oracle.py summarise code-edit records-json quote

For each request of each task (in order; earlier requests of the task are part of the text searched, as the suffix
drafter's corpus is): plain greedy decoding on llama.cpp gives the output; at every output position the draft is
the 16 tokens that followed the most recent earlier occurrence of the longest suffix (up to 8 tokens) of prompt and
output so far, and ``accepted`` is how many of them the output repeats. Then, with T(n) measured here:

* hindsight: each step knows how many tokens its draft will get accepted and picks the k that minimises the
  request's total pass time (dynamic programming over positions): no policy can do better with these drafts;
* by match length: the best fixed rule "draft k(m) tokens after a match of length m" (m capped at 8), found by
  coordinate search over all the given tasks together: what a policy that knows acceptance only through the match
  length can reach;
* by match length and agreement: the same with a second key, whether every earlier occurrence of the matched tokens
  is followed by the same token (a split says the context does not decide the next token; docs/drafters.md).

Speed-ups are decode time only (the prefill is the same for every policy), against plain decoding's n T(1).
"""

import argparse
import statistics

import torch

from specdecode.bench import backends
from specdecode.core.sampling import SamplingConfig
from specdecode.engine import GenerationConfig
from specdecode.models.build import Builder

DRAFT, MATCH = 16, 8


def drafts(context: list[int], out: list[int]) -> tuple[list[int], list[int], list[bool]]:
    """-> (match length, accepted draft tokens, whether every earlier occurrence of the match is followed by the
    same token) at every position of ``out`` after ``context``."""
    matches, accepted, agreed = [], [], []
    for i in range(len(out)):
        seq = context + out[:i]
        draft, m, nexts = [], 0, set()
        for m in range(min(MATCH, len(seq) - 1), 0, -1):
            pattern = seq[-m:]
            found = [j for j in range(len(seq) - m - 1, -1, -1) if seq[j : j + m] == pattern]
            if found:
                draft, nexts = seq[found[0] + m : found[0] + m + DRAFT], {seq[j + m] for j in found}
                break
        n = 0
        while n < len(draft) and i + n < len(out) and draft[n] == out[i + n]:
            n += 1
        matches.append(m if draft else 0)
        accepted.append(n)
        agreed.append(len(nexts) == 1)
    return matches, accepted, agreed


def hindsight(accepted: list[int], cost: dict[int, float]) -> float:
    """Least total pass time over the request when every step knows its draft's accepted length."""
    n = len(accepted)
    best = [0.0] * (n + 1)
    for i in range(n - 1, -1, -1):
        best[i] = min(
            cost[k + 1] + best[min(n, i + min(k, accepted[i]) + 1)] for k in range(min(DRAFT, accepted[i]) + 1)
        )
    return best[0]


def by_rule(data: list[tuple], rule: dict, cost: dict[int, float], agreement: bool = False) -> float:
    """Speed-up over plain decoding of drafting k = rule[match length] (or rule[match length, agreed]) at every
    step, over all requests."""
    plain = spent = 0.0
    for matches, accepted, agreed in data:
        i = 0
        while i < len(accepted):
            m = min(matches[i], MATCH)
            k = rule[(m, agreed[i]) if agreement else m]
            spent += cost[k + 1]
            i += min(k, accepted[i]) + 1
        plain += len(accepted) * cost[1]
    return plain / spent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tasks", nargs="+", choices=list(backends.TASKS), help="bench-backends tasks")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    args = ap.parse_args()
    lc = Builder("smollm2-135m", backend="llama.cpp")
    measured = backends.pass_costs(lc.target, n_max=DRAFT + 1)
    cost = {n: measured[n] for n in measured}
    print("T(n), ms:", " ".join(f"{cost[n]:.1f}" for n in sorted(cost)))
    gen = lc.generator("none", None)
    cfg = GenerationConfig(max_new_tokens=args.max_new_tokens, sampling=SamplingConfig(0.0), eos_token_ids=lc.eos)
    data = []
    for task in args.tasks:
        corpus, plain, ideal = [], 0.0, 0.0
        for prompt in backends.TASKS[task]:
            ids = lc.encode(prompt)
            out = gen.generate([ids], cfg, torch.Generator()).tokens[0]
            matches, accepted, agreed = drafts(corpus + ids, out)
            data.append((matches, accepted, agreed))
            plain, ideal = plain + len(out) * cost[1], ideal + hindsight(accepted, cost)
            corpus += ids + out
        print(f"{task:<16} hindsight {plain / ideal:.2f}x (decode only)")
    rule = best_rule(data, cost, list(range(MATCH + 1)), agreement=False)
    print(f"best rule by match length {rule}: {by_rule(data, rule, cost):.2f}x over all tasks (decode only)")
    keys = [(m, a) for m in range(MATCH + 1) for a in (False, True)]
    both = best_rule(data, cost, keys, agreement=True)
    print(f"best rule by match length and agreement: {by_rule(data, both, cost, True):.2f}x (decode only)")
    for m, a in keys[2:]:  # match 0: no draft
        got = [n for ms, acc, ag in data for mm, n, aa in zip(ms, acc, ag) if min(mm, MATCH) == m and aa == a]
        if got:
            print(
                f"  match {m} {'agreed' if a else 'split '}: {len(got):>4} positions, mean accepted "
                f"{statistics.mean(got):.2f}, k = {both[m, a]}"
            )


def best_rule(data: list[tuple], cost: dict[int, float], keys: list, agreement: bool) -> dict:
    """The rule over ``keys`` with the best speed-up, by coordinate search from "7 tokens after 3 matching"."""
    rule = {key: (7 if (key[0] if agreement else key) >= 3 else 0) for key in keys}
    for _ in range(4):
        for key in keys:
            rule[key] = max(range(DRAFT + 1), key=lambda k, key=key: by_rule(data, {**rule, key: k}, cost, agreement))
    return rule


if __name__ == "__main__":
    main()
