"""``specdecode audit``: test whether an OpenAI-compatible endpoint keeps its model's output distribution under
speculation (two-sample against a reference, one-sample against its own reported probabilities, greedy text).

Not here: sampling and verdicts (``bench.audit``), the statistics (``analysis.homogeneity``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..bench import audit, audit_report

NAME = "audit"
HELP = "does an OpenAI-compatible endpoint keep the output distribution under speculation? (exit 0 yes / 1 no)"
DESCRIPTION = (
    "Sends the same chat request N times to the endpoint under test and to a reference (the same model without "
    "speculation; default: the same endpoint with --reference-params, e.g. '{\"k\": 0}' for ours) and tests whether "
    "the first M generated tokens follow the same distribution (G-test, a permutation test for small counts, "
    "Bonferroni over prompts); where the endpoint returns top_logprobs, also whether its first tokens follow the "
    "probabilities it reports; at temperature 0, whether the text is identical. Writes samples.jsonl (resumable), "
    "report.md and outcomes.png to --out. Exit status 0: consistent; 1: not; 2: usage or connection error."
)


def add_args(ap) -> None:
    ap.add_argument("--endpoint", required=True, help="base URL of the endpoint under test, e.g. http://HOST:8000/v1")
    ap.add_argument("--reference", help="base URL of the reference endpoint (default: --endpoint)")
    ap.add_argument("--model", required=True, help="the model name both endpoints serve")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="one prompt (a user message)")
    src.add_argument("--prompts", metavar="FILE", help="a file with one prompt per line")
    ap.add_argument("--tokens", type=int, default=2, help="M: generated tokens per outcome, 1-64 (default 2)")
    ap.add_argument(
        "--max-tokens",
        type=int,
        default=16,
        help="max_tokens of each request, >= --tokens (default 16: a speculative server drafts as it would in use; "
        "with max_tokens = M it may have no room to draft at all)",
    )
    ap.add_argument("--samples", type=int, default=500, help="N: requests per side and prompt, 10-100000 (default 500)")
    ap.add_argument("--temperature", type=float, default=1.0, help="0 = greedy mode (default 1.0)")
    ap.add_argument("--top-p", type=float, default=None)
    ap.add_argument("--top-k", type=int, default=None, help="sent as top_k (an extension not every server takes)")
    ap.add_argument("--params", type=_object, default={}, help="JSON object: extra body fields of the tested requests")
    ap.add_argument(
        "--reference-params", type=_object, default={}, help="JSON object: extra body fields of the reference requests"
    )
    ap.add_argument("--api-key", help="sent as a Bearer token to both endpoints")
    ap.add_argument("--concurrency", type=int, default=4, help="requests in flight, 1-64 (default 4)")
    ap.add_argument("--alpha", type=float, default=0.01, help="test level, 0-0.5 (default 0.01)")
    ap.add_argument("--out", default="audit-out", help="folder for samples.jsonl, report.md, outcomes.png")


def _object(text: str) -> dict:
    """argparse type: a JSON object."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON ({exc.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, got {text!r}")
    return value


def _check(args) -> list[str]:
    if not 1 <= args.tokens <= 64:
        raise ValueError(f"--tokens must be in [1, 64], got {args.tokens}")
    if not args.tokens <= args.max_tokens <= 4096:
        raise ValueError(f"--max-tokens must be in [--tokens, 4096], got {args.max_tokens}")
    if not 10 <= args.samples <= 100_000:
        raise ValueError(f"--samples must be in [10, 100000], got {args.samples}")
    if not 0 <= args.temperature <= 2:
        raise ValueError(f"--temperature must be in [0, 2], got {args.temperature}")
    if not 1 <= args.concurrency <= 64:
        raise ValueError(f"--concurrency must be in [1, 64], got {args.concurrency}")
    if not 0 < args.alpha <= 0.5:
        raise ValueError(f"--alpha must be in (0, 0.5], got {args.alpha}")
    if args.prompt is not None:
        return [args.prompt]
    try:
        lines = [ln.strip() for ln in Path(args.prompts).read_text(encoding="utf-8").splitlines() if ln.strip()]
    except OSError as exc:
        raise ValueError(f"cannot read --prompts {args.prompts}: {exc.strerror}") from None
    if not lines:
        raise ValueError(f"--prompts {args.prompts} has no prompts")
    return lines


def run(args) -> int:
    prompts = _check(args)
    test = audit.HttpEndpoint(args.endpoint, args.model, args.params, args.api_key)
    ref = audit.HttpEndpoint(args.reference or args.endpoint, args.model, args.reference_params, args.api_key)
    sampling = {
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "max_tokens": args.max_tokens,
    }
    out = Path(args.out)
    try:
        result = audit.run_audit(
            test, ref, prompts, args.samples, args.tokens, sampling, out, args.concurrency, args.alpha
        )
    except audit.AuditError as exc:
        raise ValueError(str(exc)) from None
    header = (
        f"Endpoint {args.endpoint} {json.dumps(args.params)} against {args.reference or args.endpoint} "
        f"{json.dumps(args.reference_params)}; model {args.model}; {len(prompts)} prompt(s), N = {args.samples}, "
        f"M = {args.tokens} tokens of {args.max_tokens}; sampling {json.dumps(sampling)}"
    )
    path = audit_report.write(result, out, header)
    print(audit_report.summary(result))
    print(f"report: {path}", file=sys.stderr)
    return 0 if result.consistent else 1
