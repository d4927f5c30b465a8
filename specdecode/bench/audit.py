"""``specdecode audit``: does an OpenAI-compatible endpoint keep its model's output distribution under speculation?

Three checks, chosen by the sampling settings and what the endpoint returns:

* two-sample (temperature > 0): the same request N times to the endpoint under test and to a reference (the same
  model without speculation: another server, or the same one with its per-request switch, ours ``{"k": 0}``); the
  outcome is the first M generated tokens (the token strings of ``logprobs`` where the endpoint gives them, else the
  text); per prompt a homogeneity test (``analysis.homogeneity``), prompts combined by Bonferroni;
* one-sample (temperature > 0, the endpoint returns ``top_logprobs``): the first token's empirical distribution
  against the probabilities the endpoint itself reported (catches samples that do not follow what it reports);
* greedy (temperature 0): the text with and without speculation, prompt by prompt, and where it first differs.

Samples go to ``samples.jsonl`` in the output folder as they arrive (an interrupted audit resumes from it: only
the missing requests are sent); the verdict, the p-values, the power statement and the wall time go to
``report.md`` with a plot (``audit_report``). Endpoints are objects with ``complete(prompt, tokens, sampling)``:
``HttpEndpoint`` here; tests use simulated ones.

Not here: the statistics (``analysis.homogeneity``), argument parsing (``cli.audit``).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from tqdm import tqdm

from ..analysis.homogeneity import TestResult, detectable_tv, effective_n, one_sample, two_sample

TOP = 5  # top_logprobs asked for (one-sample mode)


class AuditError(Exception):
    """A usage or connection problem: the audit cannot say anything (exit status 2)."""


@dataclass(frozen=True)
class Reply:
    outcome: tuple  # the first M token strings (or the text, as a 1-tuple, without logprobs)
    text: str
    top: dict | None  # first token -> probability the endpoint reported (None: it reports none)


class HttpEndpoint:
    """An OpenAI-compatible chat endpoint: ``url`` is its base (``.../v1``); ``params`` extra body fields."""

    def __init__(self, url: str, model: str, params: dict | None = None, api_key: str | None = None, timeout=120.0):
        self.url, self.model, self.params = url.rstrip("/"), model, dict(params or {})
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(timeout=timeout, headers=headers)
        self.logprobs = True  # dropped after the endpoint refuses them once

    def complete(self, prompt: str, tokens: int, sampling: dict) -> Reply:
        """One request; the outcome is its first ``tokens`` tokens (``sampling["max_tokens"]`` may ask for more, so
        that a speculative server drafts as it would in use: with max_tokens = 1 nothing is ever drafted)."""
        body = {"model": self.model, "messages": [{"role": "user", "content": prompt}], "max_tokens": tokens}
        body.update({k: v for k, v in sampling.items() if v is not None})
        if self.logprobs:
            body.update(logprobs=True, top_logprobs=TOP)
        body.update(self.params)
        try:
            r = self.client.post(self.url + "/chat/completions", json=body)
        except httpx.HTTPError as exc:
            raise AuditError(f"cannot reach {self.url}: {type(exc).__name__}: {exc}") from None
        if r.status_code == 400 and self.logprobs and "logprob" in r.text:
            self.logprobs = False
            return self.complete(prompt, tokens, sampling)
        if r.status_code != 200:
            raise AuditError(f"{self.url} answered HTTP {r.status_code}: {r.text[:200]}")
        return _reply(r.json()["choices"][0], tokens)


def _reply(choice: dict, tokens: int) -> Reply:
    text = choice["message"]["content"] or ""
    content = (choice.get("logprobs") or {}).get("content")
    if not content:
        return Reply((text,), text, None)
    top = {t["token"]: math.exp(t["logprob"]) for t in content[0].get("top_logprobs") or []} or None
    return Reply(tuple(c["token"] for c in content[:tokens]), text, top)


@dataclass
class PromptVerdict:
    prompt: str
    n_test: int
    n_ref: int
    two: TestResult | None = None
    one: TestResult | None = None  # the tested endpoint's first tokens against the probabilities it reported
    one_ref: TestResult | None = None  # the same for the reference (is the check meaningful for this server?)
    greedy_diverges_at: int | None = None  # characters into the text (greedy mode; None: identical)
    detectable: float = 1.0  # TV this N detects with 90% probability
    counts: dict = field(
        default_factory=dict
    )  # "test" / "reference": Counter of outcomes; "first": test's first tokens
    reported: dict | None = None


@dataclass
class Audit:
    mode: str  # "sampled" | "greedy"
    alpha: float
    verdicts: list
    seconds: float

    @property
    def tests(self) -> list[TestResult]:
        """The checks the verdict rests on: every two-sample test, and the tested endpoint's one-sample check where
        the reference passes its own (an endpoint whose reported logprobs are not its sampling distribution, e.g.
        raw logits before top-k / min-p, fails that check with or without speculation: reported, not counted)."""
        out = []
        for v in self.verdicts:
            out += [v.two] if v.two is not None else []
            if (
                v.one is not None
                and v.one_ref is not None
                and v.one_ref.consistent(self.alpha / len(self.verdicts) / 2)
            ):
                out.append(v.one)
        return out

    @property
    def consistent(self) -> bool:
        if self.mode == "greedy":
            return all(v.greedy_diverges_at is None for v in self.verdicts)
        level = self.alpha / max(1, len(self.tests))  # Bonferroni over prompts and checks
        return all(t.consistent(level) for t in self.tests)


def load_samples(path: Path) -> list[dict]:
    """The samples already in ``path`` (a half-written last line is dropped)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return out


def collect(jobs: list[tuple], endpoints: dict, tokens: int, sampling: dict, out: Path, concurrency: int) -> list[dict]:
    """jobs: (side, prompt index, prompt, draw) still missing -> every sample of ``out`` once they are in."""

    def one(job):
        side, pi, prompt, draw = job
        rep = endpoints[side].complete(prompt, tokens, sampling)
        return {
            "side": side,
            "prompt": pi,
            "draw": draw,
            "outcome": list(rep.outcome),
            "text": rep.text,
            "top": rep.top,
        }

    with open(out, "a", encoding="utf-8") as fh, ThreadPoolExecutor(concurrency) as pool:
        bar = tqdm(
            pool.map(one, jobs), total=len(jobs), desc="audit requests", unit="req", disable=not sys.stderr.isatty()
        )
        for rec in bar:
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
    return load_samples(out)


def run_audit(
    test,
    reference,
    prompts: list[str],
    samples: int,
    tokens: int,
    sampling: dict,
    out_dir: Path,
    concurrency: int = 4,
    alpha: float = 0.01,
) -> Audit:
    """Sample (resuming from ``out_dir/samples.jsonl``), test, and return the audit (``audit_report`` writes it)."""
    t0 = time.perf_counter()
    greedy = not sampling.get("temperature")
    n = 1 if greedy else samples
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "samples.jsonl"
    kept = load_samples(path)
    path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")  # without a half-written line
    have = {(s["side"], s["prompt"], s["draw"]) for s in kept}
    jobs = [
        (side, pi, p, d)
        for d in range(n)
        for pi, p in enumerate(prompts)
        for side in ("test", "reference")
        if (side, pi, d) not in have
    ]
    recs = collect(jobs, {"test": test, "reference": reference}, tokens, sampling, path, concurrency)
    verdicts = [
        _verdict(pi, p, [r for r in recs if r["prompt"] == pi and r["draw"] < n], greedy, alpha)
        for pi, p in enumerate(prompts)
    ]
    return Audit("greedy" if greedy else "sampled", alpha, verdicts, time.perf_counter() - t0)


def _verdict(pi: int, prompt: str, recs: list[dict], greedy: bool, alpha: float) -> PromptVerdict:
    side = {s: [r for r in recs if r["side"] == s] for s in ("test", "reference")}
    v = PromptVerdict(prompt, len(side["test"]), len(side["reference"]))
    if greedy:
        a, b = side["test"][0]["text"], side["reference"][0]["text"]
        v.greedy_diverges_at = (
            None if a == b else next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        )
        return v
    v.counts = {s: Counter(tuple(r["outcome"]) for r in rs) for s, rs in side.items()}
    v.two = two_sample(v.counts["test"], v.counts["reference"], seed=pi)
    v.detectable = detectable_tv(effective_n(v.n_test, v.n_ref), max(1, v.two.df), alpha)
    v.one, v.reported, v.counts["first"] = _one_sample(side["test"])
    v.one_ref = _one_sample(side["reference"])[0]
    return v


def _one_sample(recs: list[dict]) -> tuple[TestResult | None, dict | None, Counter]:
    """First tokens of ``recs`` against the probabilities their endpoint reported -> (the test (None: it reported
    none), the reported probabilities tested, the first-token counts). The reports may differ from request to
    request (batching moves logits in the last bits, and a token near the K-th place enters or leaves the top K):
    the cells are the tokens every reply reported, with their mean reported probability (the expected count of a
    sum of independent draws), the rest one cell."""
    recs = [r for r in recs if r["top"] and r["outcome"]]
    firsts = Counter(r["outcome"][0] for r in recs)
    if not recs:
        return None, None, firsts
    core = set.intersection(*(set(r["top"]) for r in recs))
    reported = {k: sum(r["top"][k] for r in recs) / len(recs) for k in sorted(core, key=lambda k: -recs[0]["top"][k])}
    return one_sample(firsts, reported), reported, firsts
