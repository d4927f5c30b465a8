"""Analysis: closed-form theory (``theory``), seed simulations (``simulate``), seed 003's candidate sampler
(``candidates``). Not here: running the engine on real prompts (``bench``)."""
