"""Command-line interface: ``specdecode <command>``. One module per command, each with ``NAME``, ``HELP``,
``DESCRIPTION``, ``add_args(parser)`` and ``run(args)``; this module only assembles them.

Every command prints one clear error line and exits with status 2 on bad input.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from . import (
    audit,
    bench,
    bench_backends,
    bench_draft,
    bench_generate,
    bench_serve,
    bench_structured,
    bench_trees,
    candidates,
    demo,
    distill,
    distribution,
    exactness,
    generate,
    rho,
    serve,
    simulate,
    step_sim,
    study,
)

COMMANDS = [
    simulate,
    exactness,
    distribution,
    generate,
    demo,
    serve,
    bench,
    bench_trees,
    distill,
    bench_draft,
    bench_generate,
    bench_backends,
    bench_serve,
    bench_structured,
    study,
    step_sim,
    rho,
    candidates,
    audit,
]


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (the usage stays in --help)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(
        prog="specdecode", description="Provably exact speculative decoding: library, theory, simulations, tester."
    )
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    for cmd in COMMANDS:
        p = sub.add_parser(cmd.NAME, help=cmd.HELP, description=cmd.DESCRIPTION)
        cmd.add_args(p)
        p.set_defaults(func=cmd.run)
    return ap


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if not getattr(args, "func", None):
        ap.print_help()
        return 2
    if threading.current_thread() is threading.main_thread():  # SIGTERM cleans up like Ctrl-C (temporary files)
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, PermissionError) as exc:
        print(f"specdecode {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`... | head`): no traceback, and none at exit either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
