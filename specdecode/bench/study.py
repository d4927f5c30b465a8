"""The seed 001 notebook's experiments, measured with the engine (``specdecode study``).

Each experiment runs real speculative generations (the engine's one step loop, exact verification) and returns
plain records: the k x T grid (acceptance, tokens per target call, speedup over plain decoding measured on the same
prompt right before), rejection positions, drafts of graded similarity to the target (alpha, speedup, the cost
ratio c that the theory curve needs), adaptive k, batches, K drafts verified as a tree, drafts of other sizes, and a
time / memory profile. Speedups are ratios of tokens per second measured back to back on one prompt.

Not here: plots (``study_plots``), the written summary (``study_report``), argument parsing (``cli.study``).
"""

from __future__ import annotations

import math
import resource
import time
from dataclasses import dataclass

import torch

from ..core.rng import TorchRNG
from ..core.sampling import SamplingConfig
from ..engine import GenerationConfig
from ..models.build import Builder
from ..verify.chain import tokenwise_verify


@dataclass(frozen=True)
class StudyPlan:
    model: str  # the target's registry name
    label: str  # what the summary calls it
    draft: str  # the drafter of the k x T grid (a spec string)
    ks: tuple
    temps: tuple
    trials: int  # prompts per grid cell (mean +- std over them)
    new_tokens: int
    top_k: int | None
    similarity: tuple  # ((similarity value, drafter spec), ...)
    similarity_name: str
    sizes: tuple  # ((label, drafter spec), ...): drafts of other sizes, as chains
    trees: tuple  # tree shapes (K drafts verified as a tree)
    batches: tuple = (1, 4, 8)
    rejection_k: int = 5
    rejection_steps: int = 200
    prompt_len: int = 8  # random prompts (toy): tokens per prompt


def plan_for(model: str, quick: bool) -> StudyPlan:
    """The study's settings for ``toy`` (seed 001's toy target, drafts derived from it) or ``smollm2-135m``."""
    if model == "toy":
        sims = (0.0, 0.9, 0.99, 1.0) if quick else (0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 1.0)
        return StudyPlan(
            model="toy-target",
            label="seed 001 toy target (d_model 256, 6 layers, vocabulary 1000, random weights)",
            draft="model:toy-similar:1",
            ks=(2, 4, 6) if quick else (2, 3, 4, 5, 6, 8),
            temps=(0.5, 1.0) if quick else (0.5, 0.8, 1.0, 1.2),
            trials=3 if quick else 5,
            new_tokens=30,
            top_k=50,
            similarity=tuple((s, f"model:toy-similar:{s}") for s in sims),
            similarity_name="similarity s (each draft weight = s * target weight + sqrt(1 - s^2) * noise)",
            sizes=tuple((f"{n} layer{'s' * (n > 1)}", f"model:toy-similar:1:{n}") for n in (1, 2, 3)),
            trees=("static:2,1,1,1", "static:3,1,1,1", "static:2,2,1,1"),
            rejection_steps=100 if quick else 200,
        )
    if model == "smollm2-135m":
        depths = (6, 15, 24) if quick else (4, 8, 12, 16, 20, 24)
        return StudyPlan(
            model="smollm2-135m",
            label="SmolLM2-135M-Instruct (30 layers, Hugging Face fp32)",
            draft="prompt-lookup",
            ks=(2, 4, 6) if quick else (2, 3, 4, 5, 6, 8),
            temps=(0.5, 1.0) if quick else (0.5, 0.8, 1.0, 1.2),
            trials=2 if quick else 4,
            new_tokens=24 if quick else 48,
            top_k=50,
            similarity=tuple((d / 30, f"early-exit:{d}") for d in depths),
            similarity_name="fraction of the target's 30 layers in the early-exit draft",
            sizes=(
                ("prompt lookup", "prompt-lookup"),
                ("early exit 8", "early-exit:8"),
                ("early exit 15", "early-exit:15"),
            ),
            trees=("lookup:3",) if quick else ("lookup:2", "lookup:3"),
            batches=(1, 4) if quick else (1, 4, 8),
            rejection_steps=60 if quick else 150,
        )
    raise ValueError(f"--model must be toy or smollm2-135m, got {model!r}")


class Study:
    """The target loaded once, its prompts, and one generator per drafter."""

    def __init__(self, plan: StudyPlan, progress=None):
        self.plan = plan
        self.builder = Builder(plan.model)
        self.progress = progress or (lambda text: None)
        self.prompts = self._prompts(max(plan.trials, max(plan.batches)) + 16)
        self._gens: dict = {}
        self.versus_plain(self.prompts[0], plan.draft, 2, 1.0, seed=0)  # warm-up: first passes are slower, not timed

    def _prompts(self, n: int) -> list[list[int]]:
        if self.plan.model == "toy-target":  # the seed's random prompts, from a fixed seed
            g = torch.Generator().manual_seed(1234)
            return torch.randint(0, self.builder.target.vocab_size, (n, self.plan.prompt_len), generator=g).tolist()
        from ..prompts.tasks import TASKS

        order = ("summarisation", "code-edit", "qa", "chat", "story", "rewrite", "math")
        msgs = [TASKS[c][i] for i in range(max(len(v) for v in TASKS.values())) for c in order if i < len(TASKS[c])]
        return [self.builder.encode(m) for m in msgs[:n]]

    def generator(self, drafter: str, tree: str | None = None):
        key = (drafter, tree)
        if key not in self._gens:
            self._gens[key] = self.builder.generator(drafter, tree)
        return self._gens[key]

    def run(
        self,
        prompts: list[list[int]],
        drafter: str,
        k: int,
        temperature: float,
        seed: int,
        *,
        adaptive: bool = False,
        tree: str | None = None,
    ) -> dict:
        """One generation -> its record (counts, seconds, measured alpha, rejection positions, time per part)."""
        cfg = GenerationConfig(
            max_new_tokens=self.plan.new_tokens,
            k=k,
            adaptive=adaptive,
            sampling=SamplingConfig(temperature, top_k=self.plan.top_k),
            eos_token_ids=self.builder.eos,
            measure_overlap=k > 0 and tree is None,
        )
        gen = self.generator(drafter if k > 0 else "none", tree)
        if adaptive:  # the pass costs adaptive k reads are resolved once per generator (and cached): not in the timing
            gen.open(costs="auto")
        t0 = time.perf_counter()
        out = gen.generate(prompts, cfg, torch.Generator().manual_seed(seed))
        s, sec = out.stats, time.perf_counter() - t0
        return {
            "drafter": drafter if k > 0 else "none",
            "k": k,
            "T": temperature,
            "tree": tree,
            "adaptive": adaptive,
            "batch": len(prompts),
            "tokens": s.new_tokens,
            "seconds": sec,
            "tok_s": s.new_tokens / sec,
            "target_calls": s.target_calls,
            "row_steps": s.row_steps,
            "proposed": s.proposed,
            "accepted": s.accepted,
            "recovered": s.recovered,
            "bonus": s.bonus,
            "draft_calls": s.draft_calls,
            "alpha": s.overlap_sum / s.overlap_count if s.overlap_count else math.nan,
            "rejections": list(s.rejection_positions),
            "pos_proposed": list(s.per_position_proposed),
            "pos_accepted": list(s.per_position_accepted),
            "prefill_time": s.prefill_time,
            "draft_time": s.draft_time,
            "target_time": s.target_time,
            "total_time": s.total_time,
        }

    def versus_plain(
        self,
        prompt: list[int],
        drafter: str,
        k: int,
        temperature: float,
        seed: int,
        *,
        adaptive: bool = False,
        tree: str | None = None,
    ) -> dict:
        """Plain decoding, then speculative, on one prompt -> the speculative record with its speedup, the draft
        cost ratio c (seconds per draft pass / seconds per plain token) and t, the same ratio for a verify pass."""
        base = self.run([prompt], "none", 0, temperature, seed)
        r = self.run([prompt], drafter, k, temperature, seed, adaptive=adaptive, tree=tree)
        r["speedup"] = r["tok_s"] / base["tok_s"]
        per_token = base["seconds"] / base["tokens"]
        r["c"] = (r["draft_time"] / r["draft_calls"]) / per_token if r["draft_calls"] else 0.0
        r["t"] = (r["target_time"] / r["target_calls"]) / per_token if r["target_calls"] else 1.0
        return r


def grid(st: Study) -> list[dict]:
    """Acceptance, tokens per target call and speedup for every (k, T), ``trials`` prompts each."""
    p, out = st.plan, []
    for trial in range(p.trials):
        for T in p.temps:
            for k in p.ks:
                st.progress(f"grid: prompt {trial + 1}/{p.trials}, T={T}, k={k}")
                out.append({**st.versus_plain(st.prompts[trial], p.draft, k, T, seed=trial), "trial": trial})
    return out


def rejections(st: Study) -> dict:
    """Where drafts are rejected (k = rejection_k, T = 1): a histogram over steps and acceptance by position."""
    p = st.plan
    hist, pos_prop, pos_acc = [0] * p.rejection_k, [0] * p.rejection_k, [0] * p.rejection_k
    steps = full = i = 0
    overlap = checked = 0.0
    while steps < p.rejection_steps:
        st.progress(f"rejections: {steps}/{p.rejection_steps} steps")
        r = st.run([st.prompts[i % len(st.prompts)]], p.draft, p.rejection_k, 1.0, seed=100 + i)
        for j, n in enumerate(r["rejections"]):
            hist[j] += n
        for j in range(min(p.rejection_k, len(r["pos_proposed"]))):
            pos_prop[j] += r["pos_proposed"][j]
            pos_acc[j] += r["pos_accepted"][j]
        full += r["bonus"]
        steps += r["row_steps"]
        n = r["accepted"] + r["recovered"]  # draft positions checked (where sum min(p, q) was measured)
        if n and r["alpha"] == r["alpha"]:
            overlap, checked = overlap + r["alpha"] * n, checked + n
        i += 1
    return {
        "k": p.rejection_k,
        "steps": steps,
        "hist": hist,
        "all_accepted": full,
        "pos_proposed": pos_prop,
        "pos_accepted": pos_acc,
        "alpha": overlap / checked if checked else math.nan,
    }


def similarity(st: Study, k: int = 4) -> list[dict]:
    """Drafts of graded similarity to the target at k, T = 1: alpha, acceptance, speedup and c per trial."""
    p, out = st.plan, []
    for value, spec in p.similarity:
        for trial in range(p.trials):
            st.progress(f"similarity: {spec}, prompt {trial + 1}/{p.trials}")
            out.append(
                {**st.versus_plain(st.prompts[trial], spec, k, 1.0, seed=trial), "similarity": value, "trial": trial}
            )
    return out


def exercises(st: Study, k: int = 4) -> dict:
    """The notebook's exercises, measured: adaptive k, batches, K drafts as a tree, draft sizes, profile."""
    p = st.plan
    T = 1.0
    out: dict = {"adaptive": [], "batches": [], "trees": [], "sizes": []}
    for trial in range(p.trials):
        st.progress(f"exercises: adaptive, prompt {trial + 1}/{p.trials}")
        out["adaptive"].append(
            {**st.versus_plain(st.prompts[trial], p.draft, max(p.ks), T, trial, adaptive=True), "trial": trial}
        )
        for tree in p.trees:
            st.progress(f"exercises: tree {tree}, prompt {trial + 1}/{p.trials}")
            out["trees"].append({**st.versus_plain(st.prompts[trial], p.draft, k, T, trial, tree=tree), "trial": trial})
        for label, spec in p.sizes:
            st.progress(f"exercises: draft {label}, prompt {trial + 1}/{p.trials}")
            out["sizes"].append(
                {**st.versus_plain(st.prompts[trial], spec, k, T, trial), "label": label, "trial": trial}
            )
    for b in p.batches:
        sums = {"plain": [0, 0.0], "spec": [0, 0.0], "steps": 0}
        for trial in range(p.trials):  # prompts trial .. trial + b - 1, plain then speculative
            st.progress(f"exercises: batch {b}, run {trial + 1}/{p.trials}")
            for name, drafter, kk in (("plain", "none", 0), ("spec", p.draft, k)):
                r = st.run(st.prompts[trial : trial + b], drafter, kk, T, seed=7 + trial)
                sums[name][0] += r["tokens"]
                sums[name][1] += r["seconds"]
                sums["steps"] += r["row_steps"] if kk else 0
        out["batches"].append(
            {
                "batch": b,
                "plain_tok_s": sums["plain"][0] / sums["plain"][1],
                "spec_tok_s": sums["spec"][0] / sums["spec"][1],
                "tokens_per_call": sums["spec"][0] / max(sums["steps"], 1),
            }
        )
    out["profile"] = profile(st, k)
    return out


def _weights_mb(module) -> float:
    return sum(t.numel() * t.element_size() for t in module.parameters()) / 2**20 if module is not None else 0.0


def profile(st: Study, k: int) -> dict:
    """Time per part of one speculative generation (prefill, draft, target passes, the rest: verification,
    sampling, bookkeeping) and memory: weights per model, the peak memory each part adds on its own, and the
    process's peak resident set."""
    r = st.run([st.prompts[0]], st.plan.draft, k, 1.0, seed=3)
    drafter = st.generator(st.plan.draft).drafter
    draft_lm = getattr(drafter, "lm", None)
    if draft_lm is st.builder.target:  # an early exit runs the target's own first layers
        draft_lm = None
    rest = r["total_time"] - r["prefill_time"] - r["draft_time"] - r["target_time"]
    return {
        "seconds": {
            "prefill": r["prefill_time"],
            "draft": r["draft_time"],
            "target": r["target_time"],
            "verify and rest": max(rest, 0.0),
        },
        "weights_mb": {
            "target": _weights_mb(st.builder.target.model),
            "draft": _weights_mb(getattr(draft_lm, "model", None)),
        },
        "peak_mb": _part_peaks(st, draft_lm, k),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "tokens": r["tokens"],
    }


def _part_peaks(st: Study, draft_lm, k: int) -> dict:
    """Resident memory each part adds at its peak, run alone (weights excluded: they are already resident)."""
    prompt, target = st.prompts[0], st.builder.target
    target.reset(1)
    out = {
        "target prefill": _peak_mb(lambda: target.extend([prompt], need_logits=False)),
        f"target verify pass ({k + 1} tokens)": _peak_mb(lambda: target.extend([[0] * (k + 1)])),
    }
    if draft_lm is not None:
        draft_lm.reset(1)
        draft_lm.extend([prompt], need_logits=False)
        out["draft pass (1 token)"] = _peak_mb(lambda: draft_lm.extend([[0]]))
    V, g = target.vocab_size, torch.Generator().manual_seed(0)
    p, q = torch.rand(1, k + 1, V, generator=g).softmax(-1), torch.rand(1, k, V, generator=g).softmax(-1)
    draft = torch.randint(0, V, (1, k), generator=g)
    out["verification"] = _peak_mb(lambda: tokenwise_verify(p, q, draft, TorchRNG(g)))
    return out


def _peak_mb(fn) -> float:
    """Peak resident memory added while fn() runs, in MB (Linux: the peak is reset through /proc/self/clear_refs;
    NaN elsewhere). Memory the allocator already holds is reused and not counted."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return math.nan
    before = _status_kb("VmRSS")
    fn()
    return max(_status_kb("VmHWM") - before, 0) / 1024


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def headline(st: Study) -> dict:
    """The notebook's first experiment: one prompt, k = 4, T = 0.8 (top-k from the plan), speculative vs plain."""
    return st.versus_plain(st.prompts[0], st.plan.draft, 4, 0.8, seed=0)
