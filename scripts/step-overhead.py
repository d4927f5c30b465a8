"""Time spent outside llama.cpp's passes, per generated token: llama-cpp-python's own greedy loop against our engine
on the same GGUF (docs/backends.md, "Plain parity with llama-cpp-python").

    .venv/bin/python scripts/step-overhead.py [--prompt-tokens 16] [--repeats 6] [--max-new-tokens 128]
    .venv/bin/python scripts/step-overhead.py --task chat --drafters   # a bench task's first request, all four
    .venv/bin/python scripts/step-overhead.py --temperature 0.8 --top-k 40 --top-p 0.95   # sampled (no EOS)

Both call ``llama_decode`` from ``llama_cpp``'s module; it is wrapped here to add up the seconds inside it, so
"outside" is a request's wall time minus its passes (prefill included in the passes), over its tokens. The
configurations alternate, one request each, ``--repeats`` times, every cache emptied before each; medians. Run it on
a quiet machine: the figure is the part of plain decoding that our Python adds to the same passes. ``--drafters``
adds our adaptive prompt lookup and suffix drafters (their passes differ: compare the in-pass column too).
"""

import argparse
import os
import statistics
import time

import llama_cpp
import llama_cpp.llama_cpp as low_level

from specdecode.bench import backends, parity
from specdecode.core.sampling import SamplingConfig
from specdecode.models.build import Builder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompt-tokens", type=int, default=16, help="prompt length in tokens (default 16)")
    ap.add_argument("--repeats", type=int, default=6, help="requests per configuration (default 6)")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--task", choices=list(backends.TASKS), help="a bench-backends task's first request instead")
    ap.add_argument("--drafters", action="store_true", help="also our adaptive prompt lookup and suffix drafters")
    ap.add_argument("--temperature", type=float, default=0.0, help="sample (each library its own sampler; no EOS)")
    ap.add_argument("--top-k", type=int, default=None)
    ap.add_argument("--top-p", type=float, default=None)
    ap.add_argument("--min-p", type=float, default=None)
    args = ap.parse_args()
    spent = {"seconds": 0.0, "calls": 0}
    real = low_level.llama_decode

    def timed(ctx, batch):
        t0 = time.perf_counter()
        rc = real(ctx, batch)
        spent["seconds"] += time.perf_counter() - t0
        spent["calls"] += 1
        return rc

    low_level.llama_decode = llama_cpp.llama_decode = timed  # our backend and llama-cpp-python both call these
    lc = Builder("smollm2-135m", backend="llama.cpp")
    if args.task:
        ids = lc.encode(backends.TASKS[args.task][0])
    else:
        ids = lc.encode(parity.text(), chat=False)[: args.prompt_tokens]
    sampling = SamplingConfig(args.temperature, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p)
    cfgs = parity.configurations(lc, args.max_new_tokens, sampling)
    names = list(cfgs) if args.drafters else [parity.BASE, "ours llama.cpp plain"]
    for name in names:  # warm-up
        cfgs[name].run(ids)
    rows = {name: [] for name in names}
    for rep in range(args.repeats):
        for name in names if rep % 2 else names[::-1]:
            cfgs[name].fresh()
            spent.update(seconds=0.0, calls=0)
            seconds, tokens, _ = cfgs[name].run(ids)
            rows[name].append((seconds, spent["seconds"], spent["calls"], len(tokens)))
    print(f"prompt {len(ids)} tokens, {args.repeats} requests each; load average {os.getloadavg()[0]:.2f}")
    print(f"{'configuration':<38} {'tokens':>6} {'passes':>6} {'in passes, ms':>13} {'outside passes, us/token':>25}")
    for name, runs in rows.items():
        outside = statistics.median(1e6 * (s - d) / n for s, d, _, n in runs)
        inside = statistics.median(1e3 * d for _, d, _, _ in runs)
        print(f"{name:<38} {runs[0][3]:>6} {runs[0][2]:>6} {inside:>13.1f} {outside:>25.0f}")


if __name__ == "__main__":
    main()
