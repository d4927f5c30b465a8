"""``specdecode distill``: make a draft for a target by distillation on the target's own generations.

Steps (each resumable from the work folder ``OUT.work``): generate labelled data in batches, pick the
head's tokens, train with the soft cross-entropy to the target's next-token distribution (forward KL;
restricted to the kept tokens its optimum is q = p renormalised on them, which also maximises
sum min(p, q)), evaluate held-out acceptance, checkpoint, save the draft to OUT.

Not here: the draft's architecture (``models.drafts``, ``models.eagle``), data generation (``data``), the
objective and evaluation (``objective``).
"""

from __future__ import annotations

import copy
import signal
import time
from pathlib import Path

import torch
from tqdm import tqdm

from ..models.cache import default_draft_dir
from ..models.drafts import DraftShape, build_draft, kept_tokens, save_draft, trainable_state, vocab_fingerprint
from ..models.eagle import EagleHead, save_eagle
from ..models.registry import load_model
from ..models.tokenizers import eos_ids, load_tokenizer
from . import objective
from .config import REG_WEIGHT, STEP_DECAY, DistillConfig, DistillResult
from .data import Example, attach_features, teacher_mass
from .work import WorkFolder, _log, check_writable, gather_data, term_as_interrupt


def default_out(model: str, arch: str = "eagle", layers: int = 2, head_tokens: int = 8192) -> Path:
    """Where ``specdecode distill`` saves a draft by default (and where ``bench`` looks for one)."""
    return default_draft_dir(model, arch, layers, head_tokens)


def snapshot_dir(out: Path, step: int) -> Path:
    return Path(str(out) + ".snapshots") / f"step-{step}"


class _Trainer:
    """The draft, its optimiser and the training state; checkpoints to ``work``."""

    def __init__(self, cfg: DistillConfig, draft, work: WorkFolder, spent_before: float, t_start: float):
        self.cfg, self.draft, self.work = cfg, draft, work
        self.params = [p for p in draft.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=0.0)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.step, self.history, self.train_s, self.loss_ema = 0, [], 0.0, None
        self.spent_before, self.t_start = spent_before, t_start

    def minutes(self) -> float:
        return self.spent_before + (time.time() - self.t_start) / 60

    def resume(self, ckpt: dict) -> None:
        self.draft.load_state_dict(ckpt["draft"], strict=False)
        self.opt.load_state_dict(ckpt["optimizer"])
        self.gen.set_state(ckpt["rng"])
        self.step, self.history, self.train_s = ckpt["step"], ckpt["history"], ckpt["train_seconds"]

    def save_checkpoint(self) -> None:
        d = self.draft
        state = d.trainable_state() if isinstance(d, EagleHead) else trainable_state(d)
        tmp = self.work.path("checkpoint.tmp")
        torch.save(
            {
                "draft": state,
                "optimizer": self.opt.state_dict(),
                "rng": self.gen.get_state(),
                "step": self.step,
                "history": self.history,
                "train_seconds": self.train_s,
                "minutes": self.minutes(),
            },
            tmp,
        )
        tmp.replace(self.work.path("checkpoint.pt"))

    def train_step(self, train: list[Example], pos_in_head: torch.Tensor, progress_frac: float) -> None:
        cfg = self.cfg
        t0 = time.time()
        for g in self.opt.param_groups:
            g["lr"] = objective.lr_at(progress_frac, cfg.lr)
        idx = torch.randint(len(train), (cfg.batch_size,), generator=self.gen).tolist()
        unroll = cfg.unroll if progress_frac >= cfg.unroll_from else 1
        outs = objective.draft_forward(self.draft, [train[i] for i in idx], pos_in_head, unroll)
        loss = sum(
            STEP_DECAY**s * (objective.distill_loss(lq, hidx, p) + REG_WEIGHT * reg)
            for s, (lq, hidx, p, reg, _, _) in enumerate(outs)
        )
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        self.step += 1
        self.train_s += time.time() - t0
        self.loss_ema = loss.item() if self.loss_ema is None else 0.9 * self.loss_ema + 0.1 * loss.item()

    def evaluate(self, heldout: list[Example], pos_in_head: torch.Tensor) -> None:
        rec = {"step": self.step} if self.loss_ema is None else {"step": self.step, "train_loss": self.loss_ema}
        self.history.append({**rec, **objective.evaluate(self.draft, heldout, pos_in_head)})


def _prepare(cfg: DistillConfig, work: WorkFolder, deadline: float, progress: bool):
    """Load the target, gather the data, pick the head's tokens, build the draft -> (target, tok, train, heldout,
    kept, draft).
    """
    target = load_model(cfg.model, "fp32")
    for p in target.parameters():
        p.requires_grad_(False)
    tok = load_tokenizer(cfg.model, target)
    # data and the EAGLE head's input features come from the target in --gen-dtype (bf16: ~2.5x faster here)
    gen_model = target if cfg.gen_dtype == "fp32" else copy.deepcopy(target).to(torch.bfloat16)
    train, heldout = gather_data(cfg, work, gen_model, target, tok, eos_ids(tok), deadline, progress)
    kept_path = work.path("kept.pt")
    if not kept_path.exists():
        torch.save(
            kept_tokens(teacher_mass(train, int(target.config.vocab_size)), cfg.head_tokens, eos_ids(tok)), kept_path
        )
    kept = torch.load(kept_path)
    if cfg.arch == "eagle":
        draft = EagleHead(target, kept)
        # generated data carries its features; a corpus (and data from older versions) gets them here
        attach_features(gen_model, [e for e in heldout if e.feats is None], work.path("heldout-feats.pt"))
        attach_features(
            gen_model, [e for e in train if e.feats is None], work.path("train-feats.pt"), progress=progress
        )
    else:
        draft = build_draft(target, DraftShape(cfg.layers, cfg.head_tokens), kept)
    return target, tok, train, heldout, kept, draft


def _report_data(train: list[Example], heldout: list[Example], kept: torch.Tensor, pos_in_head: torch.Tensor) -> int:
    mass = sum(float(e.top_p.float().sum()) for e in train)
    covered = sum(float((e.top_p.float() * (pos_in_head[e.top_ids.long()] >= 0)).sum()) for e in train)
    n_tok = sum(e.labelled for e in train)
    _log(
        f"{len(train)} training sequences, {n_tok} labelled tokens; {len(heldout)} held-out sequences; "
        f"head keeps {len(kept)} tokens = {covered / mass:.1%} of the teacher's top-64 mass"
    )
    return n_tok


def distill(cfg: DistillConfig, *, restart: bool = False, progress: bool = True) -> DistillResult:
    t_start = time.time()
    out = Path(cfg.out).expanduser()
    check_writable(out)
    for c in cfg.corpus:
        if not Path(c).is_file():
            raise ValueError(f"--corpus {c}: no such file")
    work = WorkFolder(out, cfg, restart)
    ckpt_path = work.path("checkpoint.pt")
    ckpt = torch.load(ckpt_path, weights_only=False) if ckpt_path.exists() else None
    spent_before = ckpt["minutes"] if ckpt else 0.0
    budget_s = cfg.max_minutes * 60 - spent_before * 60
    if budget_s <= 0:
        _log(f"the checkpoint already used {spent_before:.1f} of --max-minutes {cfg.max_minutes}: saving it as is")
    target, tok, train, heldout, kept, draft = _prepare(
        cfg, work, t_start + cfg.gen_fraction * max(budget_s, 0), progress
    )
    V = int(target.config.vocab_size)
    pos_in_head = torch.full((V,), -1, dtype=torch.long)
    pos_in_head[kept] = torch.arange(len(kept))
    trainer = _Trainer(cfg, draft, work, spent_before, t_start)
    if ckpt:
        trainer.resume(ckpt)
        _log(f"resumed from {ckpt_path} at step {trainer.step}")
    n_tok = _report_data(train, heldout, kept, pos_in_head)
    if not trainer.history:
        trainer.evaluate(heldout, pos_in_head)
    _train(
        trainer,
        train,
        heldout,
        pos_in_head,
        t_start + budget_s,
        progress,
        lambda step: _save(
            draft, snapshot_dir(out, step), tok, cfg, kept, V, step, trainer.minutes(), n_tok, trainer.history
        ),
    )
    if trainer.history[-1]["step"] != trainer.step:
        trainer.evaluate(heldout, pos_in_head)
    trainer.save_checkpoint()
    _save(draft, out, tok, cfg, kept, V, trainer.step, trainer.minutes(), n_tok, trainer.history)
    return DistillResult(out, trainer.step, trainer.minutes(), n_tok, trainer.history)


def _train(tr: _Trainer, train, heldout, pos_in_head, deadline: float, progress: bool, snapshot) -> None:
    """Train until --steps or the deadline; checkpoint every 2 minutes and on Ctrl-C / SIGTERM."""
    cfg = tr.cfg
    train_budget = max(deadline - time.time(), 1.0) + tr.train_s
    bar = tqdm(total=cfg.steps, initial=tr.step, desc="training draft", unit="step", disable=not progress)
    tr.draft.train()
    last_ckpt = time.time()
    old_term = term_as_interrupt()
    try:
        while tr.step < cfg.steps and time.time() < deadline:
            tr.train_step(train, pos_in_head, max(tr.step / cfg.steps, tr.train_s / train_budget))
            if tr.step % cfg.eval_every == 0 or tr.step == cfg.steps or tr.step in cfg.snapshots:
                tr.evaluate(heldout, pos_in_head)
            if tr.step in cfg.snapshots:
                snapshot(tr.step)
            h = tr.history[-1]
            bar.set_postfix_str(
                f"loss {tr.loss_ema:.3f} held-out alpha {h['alpha_t1']:.3f} greedy {h['greedy_match']:.3f}"
            )
            bar.update(1)
            if time.time() - last_ckpt > 120:
                tr.save_checkpoint()
                last_ckpt = time.time()
    except KeyboardInterrupt:
        bar.close()
        tr.save_checkpoint()
        _log(f"interrupted at step {tr.step}: checkpoint saved; run the same command again to resume")
        raise
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    bar.close()


def _save(
    draft, path: Path, tok, cfg: DistillConfig, kept, V: int, step: int, minutes: float, n_tok: int, history: list
) -> None:
    meta = {
        "format": 1,
        "kind": cfg.arch,
        "target": cfg.model,
        "vocab_fingerprint": vocab_fingerprint(tok, V),
        "vocab_size": V,
        "layers": 1 if cfg.arch == "eagle" else cfg.layers,
        "head_tokens": int(len(kept)),
        "steps": step,
        "minutes": round(minutes, 2),
        "train_tokens": n_tok,
        "held_out": history[-1],
        "settings": cfg.identity(),
    }
    was = draft.training
    draft.eval()
    if isinstance(draft, EagleHead):
        save_eagle(draft, path, tok, meta)
    else:
        save_draft(draft, path, tok, meta)
    draft.train(was)
