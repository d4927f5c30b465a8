"""One row's policy: how a request is drafted, verified and paced, fixed when it is admitted.

A ``RowPolicy`` is made once per request (``Session.admit``) and handed as it is to the drafter's sampler
(``sampler.DraftSampler``), to verification (``verify_step``) and to the depth choice (``adaptive``): the
warping shared by p and q, the verification method from the registry and the children rule it needs, the
row's randomness (a generator; Gumbel noise on its own stream) and its adaptive controller. Nothing in it
changes during generation except the controller's counts.

Not here: the row's progress (``session.Request``), the algorithms (``verify``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.rng import TorchRNG
from ..core.sampling import SamplingConfig
from ..verify import CounterGumbel, Method
from .adaptive import AdaptiveK

_PLAIN = SamplingConfig(1.0)


@dataclass(eq=False)
class RowPolicy:
    sampling: SamplingConfig  # the warping shared by p and q
    method: Method | None  # the verification method (None: a sampler used for drafting only)
    children: str  # how a node's children are drawn: "sample" | "iid" | "wor" | "topm" (verify.registry)
    rng: TorchRNG  # rows that share one TorchRNG draw together, in one call, in row order
    noise: CounterGumbel | None = None  # Gumbel-coupled rows: noise of stream ``stream`` at absolute positions
    stream: int = 0
    limit: int = 0  # the most draft depth this row may use (k, or the drafter's tree depth)
    adaptive: AdaptiveK | None = None  # chooses the depth each step (None: always ``limit``)

    def __post_init__(self):
        if self.noise is not None and self.children != "sample":
            raise ValueError("Gumbel-coupled drafting draws one child per node (chains only)")

    @staticmethod
    def for_method(
        method: Method,
        sampling: SamplingConfig,
        rng: TorchRNG,
        noise: CounterGumbel | None = None,
        stream: int = 0,
        limit: int = 0,
        adaptive: AdaptiveK | None = None,
    ) -> RowPolicy:
        return RowPolicy(sampling, method, method.children, rng, noise, stream, limit, adaptive)

    @property
    def q_config(self) -> SamplingConfig:
        """Greedy trees rank children by the plain softmax (the warped q at T = 0 is one-hot and would leave
        one child per node); everything else uses the target's warping."""
        return _PLAIN if self.children == "topm" else self.sampling

    def verify_key(self) -> tuple:
        """Rows with equal keys are verified in one batched call (same method, warping and randomness)."""
        return (self.method.name, self.sampling, self.rng, self.noise)
