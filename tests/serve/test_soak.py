"""A short soak (`bench-serve --soak` on a tiny model, in-process server): the ledger balances, nothing is lost, no
5xx, and the bad requests of the mix all get a 4xx."""

import os

import pytest

pytest.importorskip("uvicorn")

from test_hostile import MODEL, Running  # noqa: E402

from specdecode.bench.soak import format_ledger, plan_request, soak  # noqa: E402
from specdecode.models import Builder  # noqa: E402


def test_the_mix_has_every_kind():
    import random

    rng = random.Random(0)
    kinds = [plan_request(rng, [{"messages": []}], MODEL, 8)["kind"] for _ in range(2000)]
    share = {k: kinds.count(k) / len(kinds) for k in set(kinds)}
    assert set(share) == {"bad", "disconnect", "stream", "json"}
    assert 0.03 < share["bad"] < 0.07 and 0.08 < share["disconnect"] < 0.12


def test_a_short_soak_balances_its_ledger():
    srv = Running(Builder(MODEL), max_batch=8)
    try:
        led = soak(srv.url, os.getpid(), MODEL, minutes=0.15, concurrency=8, max_tokens=12, seed=3)
    finally:
        srv.stop()
    assert led["sent"] > 50 and led["lost"] == 0, format_ledger(led)
    assert set(led["outcomes"]) <= {"completed", "disconnected", "4xx"}, led["outcomes"]
    assert led["outcomes"]["completed"] > 0 and led["tok_s"] > 0
    assert "lost 0" in format_ledger(led)
