"""llama.cpp's own ``llama-server`` as a benchmark anchor: plain and with each of its n-gram speculation types
(``--spec-type ngram-simple|ngram-map-k|ngram-map-k4v|ngram-mod|ngram-cache``), the C++ speculation of the
llama.cpp tree vendored in the pinned llama-cpp-python, built once by ``make llama-server``.

``binary()`` finds it (``$SPECDECODE_LLAMA_SERVER``, else the cache); absent, the benches print ``MISSING`` and
go on. bench-backends sends token ids to its native ``/completion`` endpoint and reads the server's own timings
(prompt and generation, no HTTP), which favours it; bench-serve uses its OpenAI endpoint like any server.

Not here: building it (``scripts/build-llama-server.sh``), the tables (``backends``, ``serve``).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..models.cache import cache_dir

SPEC_TYPES = ("ngram-simple", "ngram-map-k", "ngram-map-k4v", "ngram-mod", "ngram-cache")
MISSING = "llama-server is not built: run `make llama-server` (several minutes) to add llama.cpp's own anchor"


def binary() -> Path | None:
    """The llama-server executable, or None when it has not been built."""
    env = os.environ.get("SPECDECODE_LLAMA_SERVER")
    path = Path(env) if env else cache_dir() / "llama-server" / "bin" / "llama-server"
    return path if path.is_file() and os.access(path, os.X_OK) else None


def filter_knobs(sampling) -> dict:
    """A ``SamplingConfig``'s filters as llama.cpp's samplers take them (llama-cpp-python's ``generate``, its server
    and llama-server alike), every filter not asked for off: top_k 0, top_p 1, min_p 0. Their defaults otherwise
    apply top-k 40, top-p 0.95 and min-p 0.05 to what a request leaves out."""
    return {
        "top_k": sampling.top_k or 0,
        "top_p": 1.0 if sampling.top_p is None else sampling.top_p,
        "min_p": sampling.min_p or 0.0,
    }


def command(exe: Path, gguf: str, port: int, spec_type: str | None, parallel: int = 1) -> list[str]:
    """llama-server on 127.0.0.1 with the GGUF, flash attention on, all cores, ``parallel`` slots; a spec type
    drafts up to 16 tokens (llama.cpp's n-gram drafts are checked against the target, greedy here)."""
    cmd = [str(exe), "-m", gguf, "--host", "127.0.0.1", "--port", str(port), "-t", str(os.cpu_count() or 1)]
    cmd += ["-c", str(4096 * parallel), "-np", str(parallel), "-fa", "on", "--no-webui"]
    if spec_type:
        if spec_type not in SPEC_TYPES:
            raise ValueError(f"llama-server spec type must be one of {', '.join(SPEC_TYPES)}, got {spec_type!r}")
        cmd += ["--spec-type", spec_type, "--spec-draft-n-max", "16"]
    return cmd


def complete(url: str, ids: list[int], max_new: int) -> tuple[float, list[int]]:
    """One greedy completion of token ids -> (the server's own seconds: prompt + generation, the new token ids)."""
    import httpx

    body = {
        "prompt": ids,
        "n_predict": max_new,
        "temperature": 0.0,
        "top_k": 1,
        "cache_prompt": False,  # every run pays its prefill, as ours do
        "return_tokens": True,
    }
    res = httpx.post(url + "/completion", json=body, timeout=600)
    res.raise_for_status()
    out = res.json()
    timings = out.get("timings", {})
    seconds = (timings.get("prompt_ms", 0.0) + timings.get("predicted_ms", 0.0)) / 1000
    return seconds, [int(t) for t in out.get("tokens", [])]
