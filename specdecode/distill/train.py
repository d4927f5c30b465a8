"""``specdecode distill``: make a draft for a target by distillation on the target's own generations.

Steps (each resumable from the work folder ``OUT.work``): generate labelled data in batches, pick the
head's tokens, train with the soft cross-entropy to the target's next-token distribution (forward KL;
restricted to the kept tokens its optimum is q = p renormalised on them, which also maximises
sum min(p, q)), evaluate held-out acceptance, checkpoint, save the draft to OUT.

Held-out acceptance during training: alpha(T=1) = sum over the teacher's top-64 of min(p, q) (a lower
bound of sum min(p, q): the mass beyond the top 64 is not counted) and the greedy match rate
(alpha at T = 0). The engine measures the real thing (``specdecode bench-draft``).

Not here: the draft's architecture (``distill.draft``) or data generation (``distill.data``).
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .data import (Example, attach_features, corpus_examples, encode, generate_examples, held_out_prompts, load_examples,
                   save_examples, teacher_mass, training_prompts)
from .draft import DraftShape, build_draft, kept_tokens, save_draft, trainable_state, vocab_fingerprint
from .eagle import EagleHead, save_eagle

ARCHS = ("shallow", "eagle")
REG_WEIGHT = 1.0  # EAGLE: weight of the feature regression next to the soft cross-entropy
STEP_DECAY = 0.8  # EAGLE --unroll: the loss of drafting step s + 1 is weighted STEP_DECAY ** s


@dataclass
class DistillConfig:
    model: str = "smollm2-135m"
    out: str = ""
    arch: str = "eagle"  # "eagle": a head on the target's hidden states; "shallow": a standalone small model
    layers: int = 2
    head_tokens: int = 8192
    prompts: int = 5130  # all built-in prompts; generation stops when its share of --max-minutes is used
    max_new_tokens: int = 128
    gen_temperatures: tuple = (0.8, 0.0)
    gen_batch: int = 96
    gen_dtype: str = "bf16"
    corpus: tuple = ()
    steps: int = 4000
    batch_size: int = 12
    lr: float = 5e-4
    unroll: int = 1  # EAGLE: also train drafting steps 2..N on the head's own predicted features
    unroll_from: float = 0.0  # ... from this share of the training on (earlier steps: step 1 only, ~3x cheaper)
    max_minutes: float = 55.0
    gen_fraction: float = 0.5  # at most this share of --max-minutes goes to data generation
    eval_every: int = 50
    seed: int = 0
    held_out: int = 20  # held-out prompts (bench chat + story)
    snapshots: tuple = ()  # also save the draft at these steps, to OUT.snapshots/step-N (draft-quality studies)

    def __post_init__(self):
        DraftShape(self.layers, self.head_tokens)  # validates
        if self.arch not in ARCHS:
            raise ValueError(f"--arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        for name in ("prompts", "max_new_tokens", "gen_batch", "steps", "batch_size", "eval_every", "held_out", "unroll"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.unroll_from < 1:
            raise ValueError(f"--unroll-from must be in [0, 1), got {self.unroll_from}")
        if not self.lr > 0:
            raise ValueError(f"--lr must be > 0, got {self.lr}")
        if not self.max_minutes > 0:
            raise ValueError(f"--max-minutes must be > 0, got {self.max_minutes}")
        if any(n < 1 for n in self.snapshots):
            raise ValueError(f"--snapshots must be steps >= 1, got {self.snapshots}")
        if any(t < 0 for t in self.gen_temperatures) or not self.gen_temperatures:
            raise ValueError(f"--gen-temperatures must be >= 0, got {self.gen_temperatures}")

    def identity(self) -> dict:
        """The settings a resumed run must share with the interrupted one."""
        keep = ("model", "arch", "layers", "head_tokens", "prompts", "max_new_tokens", "gen_temperatures", "gen_dtype", "corpus", "seed", "held_out")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items() if k in keep}


@dataclass
class DistillResult:
    out: Path
    steps: int
    minutes: float
    train_tokens: int
    history: list = field(default_factory=list)  # eval records {step, loss, alpha_t1, greedy_match}


def default_out(model: str, arch: str = "eagle", layers: int = 2, head_tokens: int = 8192) -> Path:
    """Where ``specdecode distill`` saves a draft by default (and where ``bench`` looks for one)."""
    from ..models.registry import cache_dir

    name = model.rstrip("/").split("/")[-1]
    return cache_dir() / "drafts" / (f"{name}-eagle-V{head_tokens}" if arch == "eagle" else f"{name}-L{layers}-V{head_tokens}")


def _log(msg: str) -> None:
    print(f"[distill] {msg}", file=sys.stderr, flush=True)


def check_writable(out: Path) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe = out.parent / f".{out.name}.write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"cannot write the draft to {out} ({exc.strerror or exc}): choose a writable --out")


# ------------------------------------------------------------------ loss and eval

def draft_forward(draft, examples: list[Example], pos_in_head: torch.Tensor, steps: int = 1) -> list[tuple]:
    """One forward of a shallow draft or an EAGLE head over right-padded examples.

    Shallow: inputs x_0..x_{L-2}, the hidden state at column c predicts token c + 1. EAGLE: inputs
    (f_j, x_{j+1}), column j predicts token j + 2 (and f^_{j+1} is regressed on f_{j+1}); with
    ``steps`` > 1 also the drafting steps that feed back predicted features (``EagleHead.unrolled``).
    -> one tuple per step (shallow drafts: one): log q over the head's tokens [T, N], teacher head
    indices [T, K] (-1: not in the head), teacher probs [T, K], feature regression loss (0 for
    shallow drafts), and each prediction's example [T] and column [T].
    """
    eagle = isinstance(draft, EagleHead)
    shift = 2 if eagle else 1
    B, L = len(examples), max(len(e.ids) for e in examples) - 1
    ids = torch.zeros(B, L, dtype=torch.long)
    mask = torch.zeros(B, L, dtype=torch.long)
    f_in = torch.zeros(B, L, examples[0].feats.shape[-1]) if eagle else None
    rows, cols, tid, tp, f_tgt = [], [], [], [], []
    for b, e in enumerate(examples):
        x = e.ids[1:] if eagle else e.ids[:-1]
        ids[b, : len(x)] = torch.tensor(x)
        mask[b, : len(x)] = 1
        t = torch.arange(e.start, len(e.ids))  # labelled tokens
        keep = t - shift >= 0
        rows.append(torch.full((int(keep.sum()),), b))
        cols.append((t - shift)[keep])
        tid.append(e.top_ids.long()[keep])
        tp.append(e.top_p.float()[keep])
        if eagle:
            f_in[b, : len(x)] = e.feats[: len(x)].float()
            f_tgt.append(e.feats[(t - 1)[keep]].float())
    rows, cols, hidx, p = torch.cat(rows), torch.cat(cols), pos_in_head[torch.cat(tid)], torch.cat(tp)
    if not eagle:
        hidden = draft.model(input_ids=ids, attention_mask=mask).last_hidden_state  # [B, L, H]
        logits = draft.lm_head.small_logits(hidden[rows, cols])
        return [(torch.log_softmax(logits.float(), dim=-1), hidx, p, torch.zeros(()), rows, cols)]
    f_tgt = torch.cat(f_tgt)
    out = []
    for s, h in enumerate(draft.unrolled(f_in, ids, steps, attention_mask=mask), start=1):
        ok = cols >= s - 1  # step s at column j starts from the true feature of column j - s + 1
        hs = h[rows[ok], cols[ok]]
        reg = torch.nn.functional.smooth_l1_loss(hs.float(), f_tgt[ok])
        out.append((torch.log_softmax(draft.head.small_logits(hs).float(), dim=-1), hidx[ok], p[ok], reg, rows[ok], cols[ok]))
    return out


def distill_loss(log_q: torch.Tensor, head_idx: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """log_q [T, N], head_idx [T, K] (-1: token not in the head), p [T, K] -> mean soft cross-entropy."""
    valid = head_idx >= 0
    lq = log_q.gather(1, head_idx.clamp(min=0))
    return -(p * lq * valid).sum(1).mean()


def greedy_hits(log_q: torch.Tensor, head_idx: torch.Tensor) -> torch.Tensor:
    """log_q [T, N], head_idx [T, K] -> [T] bool: the draft's argmax is the teacher's argmax."""
    top = head_idx[:, 0]
    return (log_q.argmax(1) == top) & (top >= 0)


def acceptance(log_q: torch.Tensor, head_idx: torch.Tensor, p: torch.Tensor) -> tuple[float, float]:
    """-> (mean sum over the teacher's top-K of min(p, q) [T = 1], greedy match rate [T = 0])."""
    qk = log_q.exp().gather(1, head_idx.clamp(min=0)) * (head_idx >= 0)
    alpha = torch.minimum(p, qk).sum(1).mean().item()
    return alpha, greedy_hits(log_q, head_idx).float().mean().item()


EVAL_STEPS = 3  # held-out acceptance is also reported for the EAGLE head's 2nd and 3rd drafting steps


@torch.no_grad()
def evaluate(draft, examples: list[Example], pos_in_head: torch.Tensor) -> dict:
    """Held-out loss, alpha(T=1) and greedy match of the first drafting step (true features); for an
    EAGLE head also alpha and greedy match of steps 2 and 3 (``alpha_t1_s2``, ``greedy_match_s2``, ...),
    which draft from the head's own predicted features, and ``greedy_chain``: the mean number of tokens
    a greedy chain of 3 drafted tokens gets accepted (m1 + m1 m2 + m1 m2 m3 over the chains that start
    at each labelled column; teacher-forced contexts)."""
    was = draft.training
    draft.eval()
    tot: dict[str, float] = {}
    n: dict[str, int] = {}

    def add(key, value, count):
        tot[key] = tot.get(key, 0.0) + value * count
        n[key] = n.get(key, 0) + count

    steps = EVAL_STEPS if isinstance(draft, EagleHead) else 1
    for i in range(0, len(examples), 8):
        batch = examples[i:i + 8]
        hits, known = [], []  # per step [B, L]: greedy match / prediction exists, at the column its chain starts
        for s, (lq, hidx, p, _, rows, cols) in enumerate(draft_forward(draft, batch, pos_in_head, steps), start=1):
            a, m = acceptance(lq, hidx, p)
            T = hidx.shape[0]
            sfx = "" if s == 1 else f"_s{s}"
            if s == 1:
                add("loss", distill_loss(lq, hidx, p).item(), T)
            add("alpha_t1" + sfx, a, T)
            add("greedy_match" + sfx, m, T)
            grid = torch.zeros(len(batch), max(len(e.ids) for e in batch), dtype=torch.bool)
            hits.append(grid.index_put((rows, cols - (s - 1)), greedy_hits(lq, hidx)))
            known.append(grid.index_put((rows, cols - (s - 1)), torch.ones_like(rows, dtype=torch.bool)))
        if steps > 1:
            valid = torch.stack(known).all(0)
            length = torch.stack(hits).float().cumprod(0).sum(0)  # m1 + m1 m2 + m1 m2 m3
            if valid.any():
                add("greedy_chain", length[valid].mean().item(), int(valid.sum()))
    draft.train(was)
    return {k: v / max(n[k], 1) for k, v in tot.items()}


def lr_at(progress: float, base: float, warmup: float = 0.03) -> float:
    """Linear warm-up then cosine decay to 10% of base; progress in [0, 1]."""
    if progress < warmup:
        return base * max(progress / warmup, 0.05)
    x = min((progress - warmup) / (1 - warmup), 1.0)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * x)))


# ------------------------------------------------------------------ the command

class _Work:
    """The work folder OUT.work: data batches, kept tokens, checkpoint, settings."""

    def __init__(self, out: Path, cfg: DistillConfig, restart: bool):
        self.dir = Path(str(out) + ".work")
        if restart and self.dir.exists():
            import shutil

            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        settings = self.dir / "settings.json"
        ident = cfg.identity()
        if settings.exists():
            old = json.loads(settings.read_text())
            if old != ident:
                diff = ", ".join(f"{k}: {old.get(k)!r} -> {ident.get(k)!r}" for k in ident if old.get(k) != ident.get(k))
                raise ValueError(f"{self.dir} holds an interrupted run with other settings ({diff}); "
                                 f"resume with the same settings or pass --restart")
        else:
            settings.write_text(json.dumps(ident, indent=1))

    def path(self, name: str) -> Path:
        return self.dir / name


def _gen_data(cfg, work: _Work, gen_model, target, tok, eos, deadline: float, progress: bool) -> tuple[list[Example], list[Example]]:
    held = work.path("heldout.pt")
    if not held.exists():
        hp = [encode(tok, m) for m in held_out_prompts()[: cfg.held_out]]
        ex = []
        for i in range(0, len(hp), cfg.gen_batch):
            ex += generate_examples(gen_model, hp[i:i + cfg.gen_batch], max_new_tokens=cfg.max_new_tokens,
                                    temperature=0.8, eos=eos, generator=torch.Generator().manual_seed(cfg.seed + 10_000 + i),
                                    features=cfg.arch == "eagle")
        save_examples(ex, held)
    heldout = load_examples(held)
    prompts = [encode(tok, p) for p in training_prompts(cfg.prompts, cfg.seed)]
    nb = math.ceil(len(prompts) / cfg.gen_batch)
    from tqdm import tqdm

    bar = tqdm(total=nb, desc="generating data", unit="batch", disable=not progress)
    train: list[Example] = []
    for i in range(nb):
        f = work.path(f"data-{i:04d}.pt")
        if not f.exists():
            if time.time() > deadline:
                _log(f"data generation stopped at batch {i}/{nb} (its share of --max-minutes is used up)")
                break
            T = cfg.gen_temperatures[i % len(cfg.gen_temperatures)]
            ex = generate_examples(gen_model, prompts[i * cfg.gen_batch:(i + 1) * cfg.gen_batch],
                                   max_new_tokens=cfg.max_new_tokens, temperature=T, eos=eos,
                                   generator=torch.Generator().manual_seed(cfg.seed + i), features=cfg.arch == "eagle")
            save_examples(ex, f)
        train += load_examples(f)
        bar.update(1)
        bar.set_postfix_str(f"{sum(e.labelled for e in train)} tokens")
    bar.close()
    if cfg.corpus:
        cf = work.path("corpus.pt")
        if not cf.exists():
            save_examples(corpus_examples(target, tok, [Path(c) for c in cfg.corpus]), cf)
        train += load_examples(cf)
    if not train:
        raise ValueError("no training data was generated: raise --max-minutes or lower --prompts")
    return train, heldout


def _term_as_interrupt():
    """SIGTERM (e.g. `kill`, a job scheduler) saves a checkpoint like Ctrl-C does. -> the previous handler."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)


def distill(cfg: DistillConfig, *, restart: bool = False, progress: bool = True) -> DistillResult:
    from ..models.registry import load_model, load_tokenizer
    from ..runtime import eos_ids

    t_start = time.time()
    out = Path(cfg.out).expanduser()
    check_writable(out)
    for c in cfg.corpus:
        if not Path(c).is_file():
            raise ValueError(f"--corpus {c}: no such file")
    work = _Work(out, cfg, restart)
    target = load_model(cfg.model, "fp32")
    for p in target.parameters():
        p.requires_grad_(False)
    tok = load_tokenizer(cfg.model, target)
    eos = eos_ids(tok)
    V = int(target.config.vocab_size)
    ckpt_path = work.path("checkpoint.pt")
    ckpt = torch.load(ckpt_path, weights_only=False) if ckpt_path.exists() else None
    spent_before = ckpt["minutes"] if ckpt else 0.0
    budget_s = cfg.max_minutes * 60 - spent_before * 60
    if budget_s <= 0:
        _log(f"the checkpoint already used {spent_before:.1f} of --max-minutes {cfg.max_minutes}: saving it as is")
    # data and the EAGLE head's input features come from the target in --gen-dtype (bf16: ~2.5x faster here)
    gen_model = target if cfg.gen_dtype == "fp32" else copy.deepcopy(target).to(torch.bfloat16)
    train, heldout = _gen_data(cfg, work, gen_model, target, tok, eos, t_start + cfg.gen_fraction * max(budget_s, 0), progress)
    kept_path = work.path("kept.pt")
    if not kept_path.exists():
        torch.save(kept_tokens(teacher_mass(train, V), cfg.head_tokens, eos), kept_path)
    kept = torch.load(kept_path)
    pos_in_head = torch.full((V,), -1, dtype=torch.long)
    pos_in_head[kept] = torch.arange(len(kept))
    if cfg.arch == "eagle":
        draft = EagleHead(target, kept)
        # generated data carries its features; a corpus (and data from older versions) gets them here
        attach_features(gen_model, [e for e in heldout if e.feats is None], work.path("heldout-feats.pt"))
        attach_features(gen_model, [e for e in train if e.feats is None], work.path("train-feats.pt"), progress=progress)
    else:
        draft = build_draft(target, DraftShape(cfg.layers, cfg.head_tokens), kept)
    params = [p for p in draft.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(cfg.seed)
    step, history, train_s = 0, [], 0.0
    if ckpt:
        draft.load_state_dict(ckpt["draft"], strict=False)
        opt.load_state_dict(ckpt["optimizer"])
        gen.set_state(ckpt["rng"])
        step, history, train_s = ckpt["step"], ckpt["history"], ckpt["train_seconds"]
        _log(f"resumed from {ckpt_path} at step {step}")
    mass = sum(float(e.top_p.float().sum()) for e in train)
    covered = sum(float((e.top_p.float() * (pos_in_head[e.top_ids.long()] >= 0)).sum()) for e in train)
    n_tok = sum(e.labelled for e in train)
    _log(f"{len(train)} training sequences, {n_tok} labelled tokens; {len(heldout)} held-out sequences; "
         f"head keeps {len(kept)} tokens = {covered / mass:.1%} of the teacher's top-64 mass")
    if not history:
        history.append({"step": 0, **evaluate(draft, heldout, pos_in_head)})
    deadline = t_start + budget_s
    train_budget = max(deadline - time.time(), 1.0) + train_s
    from tqdm import tqdm

    bar = tqdm(total=cfg.steps, initial=step, desc="training draft", unit="step", disable=not progress)

    def save_ckpt():
        state = draft.trainable_state() if isinstance(draft, EagleHead) else trainable_state(draft)
        torch.save({"draft": state, "optimizer": opt.state_dict(), "rng": gen.get_state(), "step": step,
                    "history": history, "train_seconds": train_s,
                    "minutes": spent_before + (time.time() - t_start) / 60}, work.path("checkpoint.tmp"))
        work.path("checkpoint.tmp").replace(ckpt_path)

    draft.train()
    last_ckpt = time.time()
    loss_ema = None
    old_term = _term_as_interrupt()
    try:
        while step < cfg.steps and time.time() < deadline:
            t0 = time.time()
            progress_frac = max(step / cfg.steps, train_s / train_budget)
            for g in opt.param_groups:
                g["lr"] = lr_at(progress_frac, cfg.lr)
            idx = torch.randint(len(train), (cfg.batch_size,), generator=gen).tolist()
            unroll = cfg.unroll if progress_frac >= cfg.unroll_from else 1
            loss = sum(STEP_DECAY ** s * (distill_loss(lq, hidx, p) + REG_WEIGHT * reg)
                       for s, (lq, hidx, p, reg, _, _) in enumerate(draft_forward(draft, [train[i] for i in idx], pos_in_head,
                                                                             unroll)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            step += 1
            train_s += time.time() - t0
            loss_ema = loss.item() if loss_ema is None else 0.9 * loss_ema + 0.1 * loss.item()
            if step % cfg.eval_every == 0 or step == cfg.steps or step in cfg.snapshots:
                history.append({"step": step, "train_loss": loss_ema, **evaluate(draft, heldout, pos_in_head)})
            if step in cfg.snapshots:
                _save(draft, snapshot_dir(out, step), tok, cfg, kept, V, step, spent_before + (time.time() - t_start) / 60,
                      n_tok, history)
            h = history[-1]
            bar.set_postfix_str(f"loss {loss_ema:.3f} held-out alpha {h['alpha_t1']:.3f} greedy {h['greedy_match']:.3f}")
            bar.update(1)
            if time.time() - last_ckpt > 120:
                save_ckpt()
                last_ckpt = time.time()
    except KeyboardInterrupt:
        bar.close()
        save_ckpt()
        _log(f"interrupted at step {step}: checkpoint saved; run the same command again to resume")
        raise
    finally:
        if old_term is not None:
            import signal

            signal.signal(signal.SIGTERM, old_term)
    bar.close()
    if history[-1]["step"] != step:
        history.append({"step": step, "train_loss": loss_ema, **evaluate(draft, heldout, pos_in_head)})
    save_ckpt()
    minutes = spent_before + (time.time() - t_start) / 60
    _save(draft, out, tok, cfg, kept, V, step, minutes, n_tok, history)
    return DistillResult(out, step, minutes, n_tok, history)


def _save(draft, path: Path, tok, cfg: DistillConfig, kept, V: int, step: int, minutes: float, n_tok: int, history: list) -> None:
    meta = {"format": 1, "kind": cfg.arch, "target": cfg.model, "vocab_fingerprint": vocab_fingerprint(tok, V), "vocab_size": V,
            "layers": 1 if cfg.arch == "eagle" else cfg.layers, "head_tokens": int(len(kept)), "steps": step, "minutes": round(minutes, 2),
            "train_tokens": n_tok, "held_out": history[-1], "settings": cfg.identity()}
    was = draft.training
    draft.eval()
    if isinstance(draft, EagleHead):
        save_eagle(draft, path, tok, meta)
    else:
        save_draft(draft, path, tok, meta)
    draft.train(was)


def snapshot_dir(out: Path, step: int) -> Path:
    return Path(str(out) + ".snapshots") / f"step-{step}"
