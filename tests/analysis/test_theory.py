import pytest

from specdecode.analysis import theory as T


def test_expected_tokens_doc_value_and_seed_correction():
    assert T.expected_tokens_per_step(0.8, 5) == pytest.approx(3.68928, abs=1e-9)
    assert round(T.expected_tokens_per_step(0.8, 5), 3) == 3.689  # seed 004 claims 3.36
    assert T.expected_tokens_per_step(1.0, 4) == 5
    assert T.expected_tokens_per_step(0.0, 4) == 1


def test_distribution_sums_to_one_and_mean_matches():
    d = T.tokens_per_step_distribution(0.7, 6)
    assert sum(d) == pytest.approx(1)
    assert sum(j * pj for j, pj in enumerate(d, 1)) == pytest.approx(T.expected_tokens_per_step(0.7, 6))


def test_optimal_k_doc_example():
    assert T.optimal_k(0.8, 0.05) == 8
    assert T.speedup(0.8, 8, 0.05) == pytest.approx(3.09, abs=0.005)
    assert T.optimal_k(0.3, 0.3) == 0 and T.optimal_k(0.2, 0.5) == 0


def test_expected_target_calls_recursion_and_bounds():
    for alpha, k, n in [(0.8, 5, 50), (0.5, 3, 17), (0.95, 8, 100)]:
        e = T.expected_target_calls(n, alpha, k)
        g = T.expected_tokens_per_step(alpha, k)
        assert n / g - 1e-9 <= e <= (n + k) / g + 1e-9
    assert T.expected_target_calls(1, 0.8, 5) == 1
    assert T.expected_target_calls(10, 0.0, 3) == pytest.approx(10)


def test_spectr_doc_values():
    p = [0.4, 0.3, 0.2, 0.1]
    q = p[::-1]
    for K, want in [(1, 0.60), (2, 0.75), (4, 0.831), (8, 0.930)]:
        assert T.spectr_acceptance(p, q, K) == pytest.approx(want, abs=6e-4)
    assert T.rho_star(p, q, 1) == 1


def test_rrs_doc_values():
    p = [0.4, 0.3, 0.2, 0.1]
    q = p[::-1]
    assert T.rrs_acceptance(p, q, 2, True) == pytest.approx(0.72)
    assert T.rrs_acceptance(p, q, 2, False) == pytest.approx(0.764, abs=5e-4)
    assert T.rrs_acceptance(p, q, 3, True) == pytest.approx(0.768)
    assert T.rrs_acceptance(p, q, 3, False) == pytest.approx(0.840, abs=5e-4)


def test_block_paper_example_and_never_worse():
    p, q = [1 / 3, 2 / 3], [2 / 3, 1 / 3]
    assert T.block_expected_tokens(p, q, 2) - 1 == pytest.approx(11 / 9)
    assert T.tokenwise_expected_tokens(p, q, 2) - 1 == pytest.approx(10 / 9)
    for p, q in [([0.35, 0.65], [0.65, 0.35]), ([0.5, 0.3, 0.2], [0.2, 0.2, 0.6]), ([0.7, 0.3], [1.0, 0.0])]:
        for k in (1, 2, 4):
            assert T.block_expected_tokens(p, q, k) >= T.tokenwise_expected_tokens(p, q, k) - 1e-12


def test_acceptance_rate_and_gumbel_bound():
    p, q = [0.5, 0.3, 0.2], [0.2, 0.2, 0.6]
    a = T.acceptance_rate(p, q)
    tv = T.total_variation(p, q)
    assert a == pytest.approx(1 - tv)
    assert T.gumbel_acceptance(p, q) >= (1 - tv) / (1 + tv) - 1e-12


@pytest.mark.parametrize(
    "call",
    [
        lambda: T.expected_tokens_per_step(1.2, 3),
        lambda: T.expected_tokens_per_step(0.5, -1),
        lambda: T.speedup(0.5, 2, -0.1),
        lambda: T.optimal_k(float("nan"), 0.1),
        lambda: T.rho_star([0.5, 0.5], [0.5, 0.5], 0),
        lambda: T.acceptance_rate([0.5, 0.5], [1.0]),
    ],
)
def test_bad_input(call):
    with pytest.raises(ValueError):
        call()


def test_positional_reduces_to_geometric():
    for alpha, k in [(0.8, 5), (0.3, 2), (0.95, 10)]:
        assert T.expected_tokens_positional([alpha] * k, k) == pytest.approx(T.expected_tokens_per_step(alpha, k))
    for alpha, c in [(0.8, 0.05), (0.6, 0.1), (0.2, 0.5)]:
        assert T.optimal_k_positional([alpha] * 64, c, 64) == T.optimal_k(alpha, c, 64)


def test_positional_prefers_long_drafts_when_bursty():
    bursty = [0.6] + [0.98] * 15  # prompt lookup: once the first token matches, the span usually continues
    assert T.optimal_k_positional(bursty, 0.09, 16) > T.optimal_k(0.6, 0.09, 16)
