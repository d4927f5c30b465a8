"""``specdecode serve``: an OpenAI-compatible HTTP server over the engine, with speculative continuous batching,
Prometheus metrics and a live page. Not here: the engine (``engine``), the command line (``cli.serve``)."""

from .app import Server, openai_param
from .worker import EngineWorker, Job

__all__ = ["EngineWorker", "Job", "Server", "openai_param"]
