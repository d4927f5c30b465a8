"""seed 002 (deep-ml #430): same signature, keys and results as the seed's reference."""

import random

import pytest

from specdecode.analysis.simulate import speculative_decode_sim


def seed_reference(draft_probs, target_probs, draft_tokens, vocab_size):
    # verbatim logic of the seed's reference implementation
    K = len(draft_tokens)
    accepted = []
    for i in range(K):
        token = draft_tokens[i]
        p = target_probs[i][token]
        q = draft_probs[i][token]
        if q == 0:
            break
        acceptance_ratio = min(1.0, p / q)
        r = random.random()
        if r < acceptance_ratio:
            accepted.append(token)
        else:
            adjusted = [max(0.0, target_probs[i][v] - draft_probs[i][v]) for v in range(vocab_size)]
            z = sum(adjusted)
            if z > 0:
                adjusted = [a / z for a in adjusted]
            else:
                adjusted = [1.0 / vocab_size] * vocab_size
            r2 = random.random()
            cum = 0.0
            correction_token = 0
            for v in range(vocab_size):
                cum += adjusted[v]
                if r2 <= cum:
                    correction_token = v
                    break
            accepted.append(correction_token)
            break
    if len(accepted) == K and len(target_probs) > K:
        r = random.random()
        cum = 0.0
        bonus_token = 0
        for v in range(vocab_size):
            cum += target_probs[K][v]
            if r <= cum:
                bonus_token = v
                break
        accepted.append(bonus_token)
    return {
        "num_draft_tokens": K,
        "num_accepted": len(accepted),
        "acceptance_rate": round(len(accepted) / (K + 1), 4) if K > 0 else 0,
        "tokens": accepted,
        "speedup_over_sequential": round(len(accepted) / 2, 2),
    }


def _dist(rnd, V, zeros=False):
    w = [rnd.random() if not (zeros and rnd.random() < 0.3) else 0.0 for _ in range(V)]
    if sum(w) == 0:
        w[0] = 1.0
    s = sum(w)
    return [x / s for x in w]


def _case(rnd):
    V = rnd.randint(2, 8)
    K = rnd.randint(0, 6)
    zeros = rnd.random() < 0.5
    draft = [_dist(rnd, V, zeros) for _ in range(K)]
    target = [_dist(rnd, V, zeros) for _ in range(K + rnd.choice([0, 1, 1]))]
    tokens = [rnd.randrange(V) for _ in range(K)]
    return draft, target, tokens, V


@pytest.mark.parametrize("seed", range(300))
def test_identical_to_seed_reference_on_fresh_cases(seed):
    gen = random.Random(10_000 + seed)  # fresh cases, independent of the global RNG
    case = _case(gen)
    random.seed(seed)
    want = seed_reference(*case)
    state_want = random.getstate()
    random.seed(seed)
    got = speculative_decode_sim(*case)
    assert got == want
    assert random.getstate() == state_want  # same number and order of random.random() calls


def test_corrected_statistics():
    random.seed(0)
    out = speculative_decode_sim([[0.5, 0.5]] * 3, [[0.5, 0.5]] * 4, [0, 1, 0], 2, corrected=True)
    assert out["num_draft_accepted"] == 3 and out["num_bonus"] == 1 and out["draft_calls"] == 3
    assert out["draft_acceptance_rate"] == 1.0 and out["num_accepted"] == 4


def test_known_values():
    random.seed(42)
    out = speculative_decode_sim([[0.7, 0.3], [0.6, 0.4]], [[0.6, 0.4], [0.5, 0.5], [0.2, 0.8]], [0, 0], 2)
    assert set(out) == {"num_draft_tokens", "num_accepted", "acceptance_rate", "tokens", "speedup_over_sequential"}
    assert out["num_draft_tokens"] == 2 and 1 <= out["num_accepted"] <= 3


def test_corrected_mode_gives_no_bonus_after_a_rejection_at_the_last_draft():
    # draft 0 always accepted (p = q), draft 1 (q = 0.5, p = 0.1) rejected 80% of the time
    q, p = [[0.5, 0.5], [0.5, 0.5]], [[0.5, 0.5], [0.9, 0.1], [0.5, 0.5]]
    random.seed(3)
    corrected = [speculative_decode_sim(q, p, [0, 1], 2, corrected=True) for _ in range(2000)]
    assert {o["num_accepted"] for o in corrected} == {2, 3}
    assert all(o["num_accepted"] == 2 + o["num_bonus"] for o in corrected)
    assert 0.15 < sum(o["num_bonus"] for o in corrected) / 2000 < 0.25
    random.seed(3)
    seed = [speculative_decode_sim(q, p, [0, 1], 2) for _ in range(200)]
    assert {o["num_accepted"] for o in seed} == {3}  # the seed's extra token after the last-position rejection
