"""Exactness tester: exact output distributions of speculative steps by enumeration.

``enumerate_outcomes`` replays a randomised function down every branch of its
``bernoulli``/``categorical`` calls and returns each outcome's exact probability.
``harness`` builds N-token distributions on a suite of small models and compares them
with the target. Not here: sampling-based (Monte-Carlo) checks, see ``montecarlo``.
"""

from ..core.enumerate import ExactRNG, enumerate_outcomes

__all__ = ["ExactRNG", "enumerate_outcomes"]
