"""What ``specdecode distill`` is asked to do (``DistillConfig``, checked when built) and what it returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..models.drafts import DraftShape

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
        for name in (
            "prompts",
            "max_new_tokens",
            "gen_batch",
            "steps",
            "batch_size",
            "eval_every",
            "held_out",
            "unroll",
        ):
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
        keep = (
            "model",
            "arch",
            "layers",
            "head_tokens",
            "prompts",
            "max_new_tokens",
            "gen_temperatures",
            "gen_dtype",
            "corpus",
            "seed",
            "held_out",
        )
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items() if k in keep}


@dataclass
class DistillResult:
    out: Path
    steps: int
    minutes: float
    train_tokens: int
    history: list = field(default_factory=list)  # eval records {step, loss, alpha_t1, greedy_match}
