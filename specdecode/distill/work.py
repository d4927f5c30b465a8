"""The work folder ``OUT.work`` of a distillation run: settings, data batches, kept tokens, checkpoint; and
gathering the training data into it (resumable: finished batches are kept).

Not here: the training loop (``train``).
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import torch
from tqdm import tqdm

from ..models.tokenizers import encode_chat
from ..prompts import held_out_prompts, training_prompts
from .config import DistillConfig
from .data import Example, corpus_examples, generate_examples, load_examples, save_examples


def _log(msg: str) -> None:
    print(f"[distill] {msg}", file=sys.stderr, flush=True)


def check_writable(out: Path) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe = out.parent / f".{out.name}.write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"cannot write the draft to {out} ({exc.strerror or exc}): choose a writable --out") from None


class WorkFolder:
    """The work folder OUT.work: data batches, kept tokens, checkpoint, settings."""

    def __init__(self, out: Path, cfg: DistillConfig, restart: bool):
        self.dir = Path(str(out) + ".work")
        if restart and self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        settings = self.dir / "settings.json"
        ident = cfg.identity()
        if settings.exists():
            old = json.loads(settings.read_text())
            if old != ident:
                diff = ", ".join(
                    f"{k}: {old.get(k)!r} -> {ident.get(k)!r}" for k in ident if old.get(k) != ident.get(k)
                )
                raise ValueError(
                    f"{self.dir} holds an interrupted run with other settings ({diff}); "
                    f"resume with the same settings or pass --restart"
                )
        else:
            settings.write_text(json.dumps(ident, indent=1))

    def path(self, name: str) -> Path:
        return self.dir / name


def gather_data(
    cfg, work: WorkFolder, gen_model, target, tok, eos, deadline: float, progress: bool
) -> tuple[list[Example], list[Example]]:
    held = work.path("heldout.pt")
    if not held.exists():
        hp = [encode_chat(tok, m) for m in held_out_prompts()[: cfg.held_out]]
        ex = []
        for i in range(0, len(hp), cfg.gen_batch):
            ex += generate_examples(
                gen_model,
                hp[i : i + cfg.gen_batch],
                max_new_tokens=cfg.max_new_tokens,
                temperature=0.8,
                eos=eos,
                generator=torch.Generator().manual_seed(cfg.seed + 10_000 + i),
                features=cfg.arch == "eagle",
            )
        save_examples(ex, held)
    heldout = load_examples(held)
    prompts = [encode_chat(tok, p) for p in training_prompts(cfg.prompts, cfg.seed)]
    nb = math.ceil(len(prompts) / cfg.gen_batch)
    bar = tqdm(total=nb, desc="generating data", unit="batch", disable=not progress)
    train: list[Example] = []
    for i in range(nb):
        f = work.path(f"data-{i:04d}.pt")
        if not f.exists():
            if time.time() > deadline:
                _log(f"data generation stopped at batch {i}/{nb} (its share of --max-minutes is used up)")
                break
            T = cfg.gen_temperatures[i % len(cfg.gen_temperatures)]
            ex = generate_examples(
                gen_model,
                prompts[i * cfg.gen_batch : (i + 1) * cfg.gen_batch],
                max_new_tokens=cfg.max_new_tokens,
                temperature=T,
                eos=eos,
                generator=torch.Generator().manual_seed(cfg.seed + i),
                features=cfg.arch == "eagle",
            )
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


def term_as_interrupt():
    """SIGTERM (e.g. `kill`, a job scheduler) saves a checkpoint like Ctrl-C does. -> the previous handler."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)
