"""specdecode: provably exact speculative decoding for Hugging Face causal LMs.

p = target distribution, q = draft distribution (Leviathan et al. notation) everywhere.
"""

__version__ = "0.1.0"
