"""The sweep behind ``specdecode bench``: every configuration on every prompt, one JSONL record each.

Prompts form the outer loop and configurations the inner one, so each prompt's configurations
run close together in time (interleaved A/B) and speedups are ratios measured in the same run.
Baselines (our plain decoding, HF ``generate``, HF prompt lookup and HF early-exit assisted
generation where HF has them) run on the same prompts. Records already in the JSONL file are
skipped, so an interrupted sweep resumes. Runs in this process by default (timings on a 2-core
machine are distorted by parallel workers); with ``ray=True`` each prompt's group of configurations
runs on one Ray actor (one model load per actor), so ratios stay within one worker and time window.

Not here: the report (``bench.report``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from ..analysis.theory import expected_tokens_per_step, speedup
from ..core.sampling import SamplingConfig
from ..engine import CausalLM, GenerationConfig
from ..models.build import Builder
from ..models.drafts import is_draft_dir, read_meta
from ..prompts import TASKS
from .records import done_keys, repair_torn_line


@dataclass(frozen=True)
class Config:
    # "none" | "prompt-lookup" | "early-exit:N" | "model:PATH" | "hf" | "hf-prompt-lookup" | "hf-early-exit:N"
    # | "hf-draft:PATH"
    drafter: str
    k: int = 0
    adaptive: bool = False
    temperature: float = 0.0
    method: str = "tokenwise"
    study: str = "sweep"  # "sweep" | "quality"
    batch: int = 1  # rows generated together by our engine (prompts of the same task)
    tree: str = ""  # "lookup:M" (prompt-lookup tree, k tokens per match) | "static:..." | "dynamic:N" (model drafters)

    @property
    def label(self) -> str:
        b = f" batch={self.batch}" if self.batch > 1 else ""
        if self.drafter.startswith("hf"):
            return short_drafter(self.drafter)
        if self.drafter == "none":
            return "plain" + b
        if self.tree:
            return f"{short_drafter(self.drafter)} tree {self.tree}" + (
                f" k={self.k}" if self.tree.startswith("lookup") else ""
            )
        return f"{short_drafter(self.drafter)} k={'adaptive' if self.adaptive else self.k} {self.method}{b}"


def short_drafter(drafter: str) -> str:
    """'model:/long/path/name' -> 'model:name' (labels); other drafters unchanged."""
    for prefix in ("model:", "hf-draft:"):
        if drafter.startswith(prefix):
            return prefix + Path(drafter[len(prefix) :]).name
    return drafter


def early_exit_depths(layers: int, fractions: tuple) -> list[int]:
    """Early-exit depths at these fractions of a model's layers (distinct, in [1, layers - 1]; none for a model
    without layers to exit from)."""
    return sorted({min(max(round(f * layers), 1), layers - 1) for f in fractions}) if layers >= 2 else []


def sweep(quick: bool, drafts: tuple = (), quality_drafts: tuple = (), layers: int = 30) -> tuple[list[Config], dict]:
    """-> (configurations, settings). Quick: a few minutes; full: the whole grid of the issue.
    drafts: folders of trained drafts (``specdecode distill``) to add as ``model:`` drafters;
    quality_drafts: drafts that only join the draft-quality study (e.g. distill snapshots);
    layers: the target's layers, which the early-exit depths follow (30 for SmolLM2: 20, and 10..26)."""
    if quick:
        temps, ks, methods = (0.0, 0.8), (2, 4, 8), ("tokenwise",)
        prompts, max_new = 1, 48
        quality = early_exit_depths(layers, (1 / 3, 2 / 3, 0.87))
    else:
        temps, ks, methods = (0.0, 0.5, 0.8, 1.0, 1.2), tuple(range(1, 11)), ("tokenwise", "block", "gumbel")
        prompts, max_new = 3, 96
        quality = early_exit_depths(layers, (0.2, 1 / 3, 0.47, 0.6, 0.73, 0.87))
    ee = [f"early-exit:{n}" for n in early_exit_depths(layers, (2 / 3,))]
    cfgs = []
    for T in temps:
        cfgs += [Config("none", temperature=T), Config("hf", temperature=T)]
        for m in methods:
            if T == 0 and m != "tokenwise":
                continue  # T = 0 always verifies greedily
            cfgs += [Config("prompt-lookup", k, False, T, m) for k in ks]
            cfgs.append(Config("prompt-lookup", 16, True, T, m))
            for d in ee:
                cfgs += [Config(d, 2, False, T, m), Config(d, 8, True, T, m)]
            for path in drafts:
                cfgs += [Config(f"model:{path}", 4, False, T, m), Config(f"model:{path}", 8, True, T, m)]
        cfgs += [Config(f"hf-draft:{path}", temperature=T) for path in drafts]
    cfgs += [Config("hf-prompt-lookup")] + [Config(f"hf-{d}") for d in ee]
    for T in temps:  # trees vs chains at comparable verify sizes (<= 16 tree nodes vs the k=8 chain's 9 tokens;
        # trained drafts: 9 nodes vs their k=4 chain's 5 tokens)
        cfgs.append(Config("prompt-lookup", 4, False, T, "rrs", tree="lookup:4"))
        cfgs += [Config(f"model:{path}", 0, False, T, "rrs-wor", tree="static:3,1,1") for path in drafts]
        if not quick:
            cfgs.append(Config("prompt-lookup", 8, False, T, "rrs", tree="lookup:2"))
            cfgs += [Config(d, 0, False, T, "spectr", tree=t) for d in ee for t in ("static:2,2,1", "dynamic:8")]
    for b in (2, 4):  # the engine's batches (ragged acceptance): plain vs prompt lookup at the same batch size
        cfgs += [
            Config("none", batch=b),
            Config("prompt-lookup", 4, False, 0.0, batch=b),
            Config("prompt-lookup", 16, True, 0.0, batch=b),
        ]
    cfgs += [Config(f"early-exit:{n}", 2, False, 0.0, "tokenwise", "quality") for n in quality]
    cfgs += [Config(f"model:{path}", 2, False, 0.0, "tokenwise", "quality") for path in drafts + tuple(quality_drafts)]
    return cfgs, {"prompts_per_task": prompts, "max_new_tokens": max_new}


def record_key(task: str, prompt_id: int, cfg: Config) -> str:
    fields = (task, prompt_id, cfg.drafter, cfg.k, cfg.adaptive, cfg.temperature, cfg.method, cfg.study, cfg.batch)
    key = "|".join(str(f) for f in fields)
    return key + (f"|{cfg.tree}" if cfg.tree else "")


class Runner:
    """Runs one configuration at a time on a target loaded once (drafts too, through the ``Builder``)."""

    def __init__(self, model: str, dtype: str = "fp32"):
        self.builder = Builder(model, dtype)
        self.target, self.tok, self.eos = self.builder.target, self.builder.tokenizer, self.builder.eos

    def draft_model(self, path: str):
        """A trained draft (loaded once per run): a CausalLM or an EAGLE head."""
        return self.builder.draft_model(path)

    def encode(self, messages) -> list[int]:
        return self.builder.encode(messages)

    def run(self, cfg: Config, ids: list[int], max_new: int, seed: int, batch_ids: list | None = None) -> dict:
        """batch_ids: the prompts of a batch (cfg.batch > 1); ids is the first of them."""
        if cfg.drafter.startswith("hf"):
            return self._run_hf(cfg, ids, max_new, seed)
        gen = self.builder.generator(cfg.drafter, cfg.tree or None)
        gc = GenerationConfig(
            max_new_tokens=max_new,
            k=cfg.k,
            adaptive=cfg.adaptive,
            method=cfg.method,
            sampling=SamplingConfig(cfg.temperature),
            eos_token_ids=self.eos,
            measure_overlap=not cfg.tree,
        )
        t0 = time.perf_counter()
        out = gen.generate(batch_ids or [ids], gc, torch.Generator().manual_seed(seed))
        dt = time.perf_counter() - t0
        s = out.stats
        rec = {
            "seconds": dt,
            "tokens": s.new_tokens,
            "tok_s": s.new_tokens / dt,
            "steps": s.row_steps,
            "tokens_per_call": s.tokens_per_target_call,
            "proposed": s.proposed,
            "accepted": s.accepted,
            "target_time": s.target_time,
            "draft_time": s.draft_time,
        }
        if cfg.tree:  # trees: tokens per target call (alpha and c are chain figures)
            return {**rec, "tree": cfg.tree}
        return {**rec, **_chain_figures(cfg, s)}

    def _run_hf(self, cfg: Config, ids, max_new, seed) -> dict:
        kw = dict(
            max_new_tokens=max_new, eos_token_id=list(self.eos) or None, pad_token_id=self.eos[0] if self.eos else None
        )
        if cfg.temperature > 0:
            kw.update(do_sample=True, temperature=cfg.temperature, top_k=0, top_p=1.0)
            torch.manual_seed(seed)  # HF samples with the global RNG; only this baseline uses it
        else:
            kw.update(do_sample=False)
        if cfg.drafter == "hf-prompt-lookup":
            kw["prompt_lookup_num_tokens"] = 10
        elif cfg.drafter.startswith("hf-early-exit"):
            kw["assistant_early_exit"] = int(cfg.drafter.split(":")[1])
        elif cfg.drafter.startswith("hf-draft:"):
            draft = self.draft_model(cfg.drafter[9:])
            if not isinstance(draft, CausalLM):
                return {"error": "HF assisted generation takes a standalone draft model, not an EAGLE head"}
            kw["assistant_model"] = draft.model
        t0 = time.perf_counter()
        try:
            out = self.target.model.generate(torch.tensor([ids]), **kw)
        except Exception as exc:  # noqa: BLE001 - a baseline HF does not support is recorded, not fatal
            return {"error": f"{type(exc).__name__}: {exc}"[:300]}
        dt = time.perf_counter() - t0
        n = out.shape[1] - len(ids)
        return {"seconds": dt, "tokens": n, "tok_s": n / dt}


def _chain_figures(cfg: Config, s) -> dict:
    """Acceptance, costs and the theory's prediction for a chain run's statistics."""
    steps = s.row_steps
    draft_tok = s.draft_time / s.proposed if s.proposed else 0.0
    t_pass = s.target_time / s.target_calls if s.target_calls else float("nan")
    c = draft_tok / t_pass if s.proposed else 0.0
    rec = {
        "recovered": s.recovered,
        "bonus": s.bonus,
        "alpha_counts": s.alpha_estimate,
        "alpha_exact": s.alpha_exact,
        "acceptance_rate": s.acceptance_rate,
        "mean_accepted": s.accepted / steps if steps else 0.0,
        "per_position_proposed": s.per_position_proposed,
        "per_position_accepted": s.per_position_accepted,
        "rejection_positions": s.rejection_positions,
        "k_history": s.k_history,
        "c": c,
        "overhead_fraction": s.overhead_fraction,
    }
    if cfg.drafter.startswith("model:"):
        rec["draft_steps"] = _draft_meta(cfg.drafter[6:]).get("steps")
    if not cfg.adaptive and cfg.k > 0 and s.proposed:
        a = min(max(s.alpha_estimate, 0.0), 1.0)
        rec["predicted_tokens_per_call"] = expected_tokens_per_step(a, cfg.k)
        rec["predicted_speedup"] = speedup(a, cfg.k, c)
        rec["g_se"] = _g_standard_error(s, cfg.k)
    return rec


def _draft_meta(path: str) -> dict:
    """The metadata of a draft made by ``specdecode distill`` ({} for other models)."""
    p = Path(path).expanduser()
    return read_meta(p) if p.is_dir() and is_draft_dir(p) else {}


def _draft_version(path: str) -> str | None:
    """'steps N, T tokens, M min' of a distill draft (None for other models): a resumed bench folder must not
    mix records of a draft with those of its retrained successor."""
    m = _draft_meta(path)
    return f"steps {m.get('steps')}, {m.get('train_tokens')} tokens, {m.get('minutes')} min" if m else None


def _g_standard_error(s, k: int) -> float:
    """Standard error of the mean tokens per step from the step histogram (fixed k)."""
    counts = list(s.rejection_positions) + [0] * (k + 1 - len(s.rejection_positions))
    hist = {n + 1: counts[n] for n in range(k)}  # rejected after n accepted: n + 1 tokens
    hist[k + 1] = s.bonus
    total = sum(hist.values())
    if total < 2:
        return float("inf")
    mean = sum(g * c for g, c in hist.items()) / total
    var = sum(c * (g - mean) ** 2 for g, c in hist.items()) / (total - 1)
    return (var / total) ** 0.5


def run_sweep(
    out_dir: Path,
    quick: bool,
    model: str,
    dtype: str,
    progress=True,
    configs=None,
    drafts: tuple = (),
    ray: bool = False,
    ray_address: str | None = None,
    ray_workers: int = 2,
    quality_drafts: tuple = (),
) -> Path:
    """Run every configuration not yet in OUT/records.jsonl. configs: (configurations, settings) to
    replace the standard sweep (tests); drafts: trained draft folders to add to the standard sweep;
    ray: run prompt groups on Ray actors (``ray_address`` None = a local Ray instance).

    Every record is appended as one whole line and synced to disk as soon as its run finishes, so an
    interruption keeps every finished run; a line torn by a crash is dropped when the sweep resumes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "records.jsonl"
    runner = None if ray else Runner(model, dtype)
    cfgs, settings = configs or sweep(quick, drafts, quality_drafts, layers=_layers(runner, model, dtype))
    versions = {
        c.drafter: _draft_version(c.drafter.split(":", 1)[1])
        for c in cfgs
        if c.drafter.startswith(("model:", "hf-draft:"))
    }
    repair_torn_line(path)
    groups = _pending(cfgs, settings, done_keys(path, versions))
    if not groups:
        return path
    meta = {"model": model, "dtype": dtype, "quick": quick}
    bar = tqdm(
        total=sum(len(g) for g in groups), desc="bench" + (" (ray)" if ray else ""), unit="run", disable=not progress
    )
    results = (
        _ray_map(groups, model, dtype, settings, meta, ray_address, ray_workers)
        if ray
        else ([rec] for g in groups for rec in run_group(runner, g, settings, meta))
    )
    with path.open("a", encoding="utf-8") as fh:
        for recs in results:
            for rec in recs:
                if versions.get(rec.get("drafter")):
                    rec["draft_version"] = versions[rec["drafter"]]
                fh.write(json.dumps(rec) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
            bar.set_postfix_str(f"{recs[-1]['task']} #{recs[-1]['prompt_id']}")
            bar.update(len(recs))
    bar.close()
    return path


def _layers(runner: Runner | None, model: str, dtype: str) -> int:
    """The target's decoder layers (0 for a model without early exit), from the loaded runner or a quick load."""
    lm = runner.target if runner is not None else Runner(model, dtype).target
    return lm.num_layers


def _pending(cfgs: list[Config], settings: dict, done: set) -> list[list]:
    """The runs still to do, grouped by prompt: one group = every configuration of one prompt (they run back to
    back on one worker, so their ratios come from one time window)."""
    groups: dict[tuple, list] = {}
    for task in TASKS:
        for pid in range(settings["prompts_per_task"]):
            for cfg in cfgs:
                if cfg.study == "quality" and task not in ("summarisation", "story"):
                    continue
                key = record_key(task, pid, cfg)
                if key not in done:
                    groups.setdefault((task, pid), []).append((task, pid, cfg, key))
    return list(groups.values())


def run_group(runner: Runner, items: list, settings: dict, meta: dict):
    """items: (task, prompt_id, Config, key) of one prompt -> yields their records, run in order."""
    for task, pid, cfg, key in items:
        ids = runner.encode(TASKS[task][pid])
        batch_ids = (
            [runner.encode(TASKS[task][(pid + j) % len(TASKS[task])]) for j in range(cfg.batch)]
            if cfg.batch > 1
            else None
        )
        rec = runner.run(cfg, ids, settings["max_new_tokens"], seed=pid, batch_ids=batch_ids)
        rec.update(
            key=key,
            task=task,
            prompt_id=pid,
            drafter=cfg.drafter,
            k=cfg.k,
            adaptive=cfg.adaptive,
            temperature=cfg.temperature,
            method=cfg.method,
            study=cfg.study,
            label=cfg.label,
            batch=cfg.batch,
            tree=cfg.tree,
            load1=os.getloadavg()[0],
            **meta,
        )
        yield rec


class _RayWorker:
    """One Ray actor: loads the models once, then runs prompt groups."""

    def __init__(self, model: str, dtype: str):
        torch.set_num_threads(1)
        self.runner = Runner(model, dtype)

    def run_group(self, items, settings, meta):
        return list(run_group(self.runner, items, settings, meta))


def _ray_map(groups: list, model: str, dtype: str, settings: dict, meta: dict, address: str | None, workers: int):
    """Run the prompt groups on Ray actors (one model load per actor); yields each group's records as it finishes.
    address None: a local Ray instance with ``workers`` CPUs; otherwise an existing cluster ('auto' or host:port)."""
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise ValueError("--ray needs the ray package: pip install 'ray>=2.9'") from None
    if workers < 1:
        raise ValueError(f"--ray-workers must be >= 1, got {workers}")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started = not ray.is_initialized()
    if started:
        kw = {"num_cpus": workers} if address is None else {"address": address}
        ray.init(include_dashboard=False, log_to_driver=False, **kw)
    try:
        actor = ray.remote(num_cpus=1)(_RayWorker)
        pool = ActorPool([actor.remote(model, dtype) for _ in range(workers)])
        yield from pool.map_unordered(lambda a, g: a.run_group.remote(g, settings, meta), groups)
    finally:
        if started:
            ray.shutdown()
