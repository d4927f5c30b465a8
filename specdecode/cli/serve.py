"""``specdecode serve``: the OpenAI-compatible server with speculative continuous batching and a live page."""

from __future__ import annotations

import sys

from ..engine import K_MAX
from ..models.build import DRAFTER_HELP, check_specs
from ..serve.guard import Limits, is_loopback, load_keys
from .common import add_corpus_args, add_model_args, add_prefix_args, builder_from, corpus_tokens, prefix_cache

NAME = "serve"
HELP = "an OpenAI-compatible server (chat and completions, streaming) with speculative continuous batching"
DESCRIPTION = (
    "Serves POST /v1/chat/completions and /v1/completions (streaming as server-sent events), GET /v1/models, "
    "/health, /metrics (Prometheus) and a live page at / that colors each token by where it came from. "
    "Concurrent requests share one running batch: they join and leave it between steps, each with its own "
    "sampling settings, seed and stop strings. Binds 127.0.0.1 unless --host says otherwise."
)


def add_args(ap) -> None:
    add_model_args(ap)
    ap.add_argument("--drafter", default="prompt-lookup", help=f"{DRAFTER_HELP} (default prompt-lookup)")
    add_corpus_args(ap)
    add_prefix_args(ap, 8)
    ap.add_argument("--tree", help="draft trees (as in `specdecode generate --tree`)")
    ap.add_argument(
        "-k", type=int, default=4, help=f"default draft length, 0-{K_MAX}; a request can set its own `k` (default 4)"
    )
    ap.add_argument(
        "--adaptive", action="store_true", help="adaptive draft length by default (a request can set `adaptive`)"
    )
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    ap.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    ap.add_argument(
        "--max-batch", type=int, default=8, help="requests in the running batch at most; more wait (default 8)"
    )
    ap.add_argument("--max-tokens", type=int, default=256, help="max_tokens when a request gives none (default 256)")
    _add_guard_args(ap)
    ap.add_argument(
        "--costs",
        metavar="FILE",
        default="auto",
        help="the pass-cost table adaptive requests read (missing: measured at start and written there; "
        "default: the table kept per model in the cache)",
    )


def _add_guard_args(ap) -> None:
    """API keys and the limits a request must fit (docs/serve.md#security-and-limits)."""
    ap.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="KEY",
        help="require Authorization: Bearer KEY on /v1/* and /metrics (repeatable; also --api-key-file and the "
        "SPECDECODE_API_KEY variable); /health stays open",
    )
    ap.add_argument("--api-key-file", metavar="FILE", help="API keys, one a line (# comments)")
    ap.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="allow a non-loopback --host without an API key (anyone who reaches the port can use the model)",
    )
    d = Limits()
    ap.add_argument(
        "--max-body",
        type=int,
        default=d.max_body_bytes,
        help="request body bytes at most (413 above) (default %(default)s)",
    )
    ap.add_argument(
        "--max-messages",
        type=int,
        default=d.max_messages,
        help="messages per chat request at most (default %(default)s)",
    )
    ap.add_argument("--max-prompt-tokens", type=int, help="prompt tokens at most (default: the model's context)")
    ap.add_argument(
        "--max-tokens-cap",
        type=int,
        default=d.max_tokens_cap,
        help="the largest max_tokens accepted (default %(default)s)",
    )
    ap.add_argument(
        "--max-queue",
        type=int,
        default=d.max_queue,
        help="requests waiting for a row at most (429 above) (default %(default)s)",
    )
    ap.add_argument(
        "--request-timeout",
        type=float,
        default=d.request_timeout,
        help="seconds a request may take (then 504) (default %(default)s)",
    )
    ap.add_argument(
        "--idle-timeout", type=float, default=15.0, help="seconds an idle connection is kept open (default %(default)s)"
    )
    ap.add_argument(
        "--shutdown-timeout",
        type=float,
        default=d.shutdown_timeout,
        help="on SIGTERM: seconds requests in flight get to finish before they end with an error event "
        "(default %(default)s)",
    )


def run(args) -> int:
    if not 0 <= args.k <= K_MAX:
        raise ValueError(f"-k must be in [0, {K_MAX}], got {args.k}")
    if args.max_batch < 1 or not 0 < args.port < 65536 or args.max_tokens < 1:
        raise ValueError(
            f"--max-batch and --max-tokens must be >= 1 and --port in [1, 65535], got {args.max_batch}, "
            f"{args.max_tokens}, {args.port}"
        )
    check_specs(args.drafter, args.tree)
    keys = load_keys(args.api_key, args.api_key_file)
    if not keys and not is_loopback(args.host) and not args.insecure_no_auth:
        raise ValueError(
            f"--host {args.host} is reachable from other machines: give --api-key (or --api-key-file, "
            f"SPECDECODE_API_KEY), or --insecure-no-auth to serve without one"
        )
    if args.idle_timeout <= 0:
        raise ValueError(f"--idle-timeout must be > 0 seconds, got {args.idle_timeout}")
    limits = Limits(
        args.max_body,
        args.max_messages,
        args.max_prompt_tokens,
        args.max_tokens_cap,
        args.max_queue,
        args.request_timeout,
        args.shutdown_timeout,
    )
    from ..serve import Server
    from ..serve.runner import serve

    prefix_cache(args)
    builder = builder_from(args)
    server = Server(
        builder.generator(args.drafter, args.tree, corpus_tokens(args)),
        builder.tokenizer,
        builder.encode,
        args.model,
        builder.eos,
        max_batch=args.max_batch,
        k=args.k,
        adaptive=args.adaptive,
        max_tokens=args.max_tokens,
        drafter=args.drafter + (f" --tree {args.tree}" if args.tree else ""),
        costs=args.costs,
        api_keys=keys,
        limits=limits,
    )
    print(
        f"[specdecode] serving {args.model} on {args.backend} with {args.drafter} at http://{args.host}:{args.port}/ "
        f"(OpenAI base_url http://{args.host}:{args.port}/v1)",
        file=sys.stderr,
    )
    serve(server, args.host, args.port, idle_timeout=args.idle_timeout)
    return 0
