"""``/metrics`` through prometheus_client: the worker's counters as metric families in Prometheus' text
exposition format, collected at scrape time into a registry of the server's own (no global state).

Names and meanings: ``specdecode_requests_total{reason}``, ``..._prompt_tokens_total``,
``..._prompt_tokens_cached_total`` (restored from the llama.cpp prefix cache), ``..._generated_tokens_total``,
``..._target_calls_total`` (target passes per request, summed), ``..._draft_tokens_proposed_total``,
``..._draft_tokens_accepted_total``, ``..._recovered_tokens_total``, ``..._bonus_tokens_total``,
``..._engine_steps_total``; gauges ``..._tokens_per_target_call``, ``..._acceptance_rate``, ``..._queue_length``,
``..._batch_size``, ``..._tokens_per_second`` (last 10 s) and ``..._position_acceptance{position}`` (the fraction
of drafts of length >= i whose first i tokens were all accepted).

Not here: the counters themselves (``worker.Metrics``).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .worker import Metrics

CONTENT_TYPE = CONTENT_TYPE_LATEST


class _Collector:
    def __init__(self, metrics: Metrics, model: str):
        self.metrics, self.model = metrics, model

    def collect(self):
        m, model = self.metrics, self.model
        with m.lock:
            t = m.totals
            reasons = sorted(m.requests.items())
            counters = [
                ("prompt_tokens", "Prompt tokens of finished requests.", m.prompt_tokens),
                (
                    "prompt_tokens_cached",
                    "Prompt tokens restored from the prefix cache instead of prefilled (finished requests).",
                    m.cached_tokens,
                ),
                ("generated_tokens", "Tokens generated for finished requests.", t.new_tokens),
                ("target_calls", "Target passes per request, summed over finished requests.", t.row_steps),
                ("draft_tokens_proposed", "Draft tokens proposed.", t.proposed),
                ("draft_tokens_accepted", "Draft tokens accepted.", t.accepted),
                ("recovered_tokens", "Tokens drawn from the residual after a rejection.", t.recovered),
                ("bonus_tokens", "Tokens drawn after every draft was accepted.", t.bonus),
                ("engine_steps", "Steps of the running batch.", m.steps),
                ("model_seconds", "Seconds the engine spent in target passes (prefills included).", m.model_seconds),
            ]
            gauges = [
                (
                    "tokens_per_target_call",
                    "Generated tokens per target pass (finished requests).",
                    t.tokens_per_target_call,
                ),
                ("acceptance_rate", "Accepted / proposed draft tokens.", t.acceptance_rate),
                ("queue_length", "Requests waiting for a row.", m.queue),
                ("batch_size", "Requests in the running batch.", m.batch),
                ("tokens_per_second", "Generated tokens per second over the last 10 s.", m.tokens_per_second()),
            ]
            positions = [
                (i + 1, a / p) for i, (p, a) in enumerate(zip(t.per_position_proposed, t.per_position_accepted)) if p
            ]
        fam = CounterMetricFamily(
            "specdecode_requests", "Finished requests by finish reason.", labels=["model", "reason"]
        )
        for reason, count in reasons:
            fam.add_metric([model, reason], count)
        yield fam
        for name, help_, value in counters:
            fam = CounterMetricFamily(f"specdecode_{name}", help_, labels=["model"])
            fam.add_metric([model], value)
            yield fam
        for name, help_, value in gauges:
            fam = GaugeMetricFamily(f"specdecode_{name}", help_, labels=["model"])
            fam.add_metric([model], value)
            yield fam
        fam = GaugeMetricFamily(
            "specdecode_position_acceptance",
            "Fraction of drafts of length >= i whose first i tokens were all accepted.",
            labels=["model", "position"],
        )
        for position, value in positions:
            fam.add_metric([model, str(position)], value)
        yield fam


def registry_of(metrics: Metrics, model: str) -> CollectorRegistry:
    """A registry of one server's own that collects ``metrics`` at each scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(metrics, model))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The registry's metrics in Prometheus' text format."""
    return generate_latest(registry)
