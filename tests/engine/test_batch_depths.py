"""Adaptive depths for rows that share one pass (``engine.adaptive.batch_depths``)."""

from specdecode.engine.adaptive import AdaptiveK, batch_depths

LINEAR = [0.010 + 0.004 * (n - 1) for n in range(1, 18)]  # T(n): a CPU, 10 ms + 4 ms per extra token


def ctrl(rate: float, k_max: int = 8) -> AdaptiveK:
    c = AdaptiveK(k_max, costs=LINEAR, draft_cost=0.0)
    for _ in range(60):  # a long history of 4-token drafts at this acceptance rate
        c.observe(4, round(rate * 4))
    c.state = 0
    return c


def test_one_row_is_the_rows_own_choice():
    a, b = ctrl(0.75), ctrl(0.75)
    assert batch_depths([(a, 8)], sum) == [min(b.choose(), 8)]


def test_batch_prices_drafts_at_the_batch_margin():
    """Alone, a row accepting 3 of 4 drafts is worth drafting (a draft token costs 0.4 of a plain pass); in a batch
    of 16 each extra token costs 4 ms against 16 tokens per 70 ms, so the same rows draft less or not at all."""
    alone = batch_depths([(ctrl(0.75), 8)], sum)[0]
    batch = batch_depths([(ctrl(0.75), 8) for _ in range(16)], sum)
    assert alone >= 2
    assert sum(batch) < 16 * alone


def test_sure_rows_draft_and_unsure_ones_do_not():
    rows = [(ctrl(1.0), 8)] * 1 + [(ctrl(0.0), 8) for _ in range(7)]
    ks = batch_depths(rows, sum)
    assert ks[0] > 0 and ks[1:] == [0] * 7


def test_fixed_rows_and_caps_are_kept():
    ks = batch_depths([(None, 5), (ctrl(1.0), 2), (None, 0)], sum)
    assert ks[0] == 5 and ks[2] == 0 and 0 <= ks[1] <= 2
    assert batch_depths([(None, 3), (None, 1)], sum) == [3, 1]
