"""``specdecode serve``: an OpenAI-compatible HTTP server over the engine, with speculative continuous batching,
API keys and limits, Prometheus metrics and a live page. Not here: the engine (``engine``), the command line
(``cli.serve``).

``Server`` and the worker load Starlette and prometheus_client (the ``serve`` extra) when first used, so the
command line and ``serve.guard`` import without them."""

__all__ = ["EngineWorker", "Job", "Server", "openai_param"]


def __getattr__(name: str):
    if name in ("Server", "openai_param"):
        from . import app

        return getattr(app, name)
    if name in ("EngineWorker", "Job"):
        from . import worker

        return getattr(worker, name)
    raise AttributeError(f"module 'specdecode.serve' has no attribute {name!r}")
