"""Time spent outside llama.cpp's passes per step of our plain decoding, for R rows in one batch (the server's
case), greedy or sampled: the Python and numpy work of a step (reading the logits, warping, drawing, bookkeeping).

    .venv/bin/python scripts/batch-overhead.py --rows 16 --temperature 1 --top-p 0.9
    .venv/bin/python scripts/batch-overhead.py --rows 16 --temperature 1 --top-p 0.9 --checkout /tmp/old-worktree

``llama_decode`` is wrapped to add up the seconds inside it; "outside" is the wall time of a generation minus its
passes (prefill included in the passes), over its steps. Each row's prompt is 32 tokens of the prompt set's text,
no end of sequence (every row runs ``--steps`` tokens), seeds 0.. per repeat; medians. ``--checkout DIR`` imports
specdecode from another checkout (e.g. a ``git worktree`` of an older commit) instead of this one, to compare two
versions run alternately on the same machine (llama-cpp-python's ``step-overhead.py`` covers one row against it).
"""

import argparse
import os
import statistics
import sys
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=16, help="rows in the batch (default 16)")
    ap.add_argument("--steps", type=int, default=64, help="tokens per row (default 64)")
    ap.add_argument("--repeats", type=int, default=4, help="generations timed (default 4)")
    ap.add_argument("--temperature", type=float, default=0.0, help="0: greedy (default)")
    ap.add_argument("--top-k", type=int, default=None)
    ap.add_argument("--top-p", type=float, default=None)
    ap.add_argument("--min-p", type=float, default=None)
    ap.add_argument("--checkout", help="import specdecode from this checkout instead (its own editable finder off)")
    args = ap.parse_args()
    if args.checkout:
        sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
        sys.path.insert(0, os.path.abspath(args.checkout))
    import llama_cpp
    import llama_cpp.llama_cpp as low_level
    import torch

    import specdecode
    from specdecode.bench import parity
    from specdecode.core.sampling import SamplingConfig
    from specdecode.engine.config import GenerationConfig
    from specdecode.models.build import Builder

    spent = {"seconds": 0.0}
    real = low_level.llama_decode

    def timed(ctx, batch):
        t0 = time.perf_counter()
        rc = real(ctx, batch)
        spent["seconds"] += time.perf_counter() - t0
        return rc

    low_level.llama_decode = llama_cpp.llama_decode = timed  # our backend calls these
    lc = Builder("smollm2-135m", backend="llama.cpp")
    gen = lc.generator("none")
    text = lc.encode(parity.text(), chat=False)
    prompts = [text[i * 40 : i * 40 + 32] for i in range(args.rows)]
    sampling = SamplingConfig(args.temperature, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p)
    cfg = GenerationConfig(max_new_tokens=args.steps, k=0, sampling=sampling)  # no end of sequence
    gen.generate(prompts, cfg, torch.Generator().manual_seed(0))  # warm-up
    outside, inside = [], []
    for rep in range(args.repeats):
        spent["seconds"] = 0.0
        t0 = time.perf_counter()
        gen.generate(prompts, cfg, torch.Generator().manual_seed(rep))
        wall = time.perf_counter() - t0
        outside.append(1e3 * (wall - spent["seconds"]) / args.steps)
        inside.append(1e3 * spent["seconds"] / args.steps)
    print(
        f"{os.path.dirname(os.path.dirname(specdecode.__file__))}: {args.rows} rows, {sampling.describe()}: "
        f"outside the passes {statistics.median(outside):.2f} ms a step, in passes {statistics.median(inside):.1f} ms; "
        f"load average {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
