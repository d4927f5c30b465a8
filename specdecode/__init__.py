"""specdecode: provably exact speculative decoding for causal language models, on two backends: Hugging Face /
torch (any device) and llama.cpp (GGUF models on the CPU).

p = target distribution, q = draft distribution (Leviathan et al. notation) everywhere.
"""

__version__ = "0.1.0"
