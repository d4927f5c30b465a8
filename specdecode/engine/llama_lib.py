"""llama-cpp-python loaded once: its module, llama.cpp's log routed into a short buffer of recent errors (kept off
the terminal) and its backend initialised; copies out of llama.cpp's output buffers and their shapes for the engine
(or each row's argmax, read in place); a sequence's cells copied to host memory and back (the prefix cache).

Not here: the backend itself (``llama_cpp.LlamaCppLM``).
"""

from __future__ import annotations

import ctypes

import numpy as np
import torch

_MODULE = None  # the llama_cpp module, imported on first use (require_llama_cpp)
INSTALL_HINT = "the llama.cpp backend needs llama-cpp-python: pip install 'specdecode[llama]'"
_ERRORS: list[str] = []  # the last messages llama.cpp logged (its own log is kept off the terminal)
_LOG_CALLBACK = None  # kept alive: llama.cpp holds a pointer to it


def require_llama_cpp():
    """Import llama-cpp-python once, route llama.cpp's log into ``_ERRORS`` and initialise its backend."""
    global _MODULE, _LOG_CALLBACK
    if _MODULE is None:
        try:
            import llama_cpp
        except ImportError:
            raise ValueError(INSTALL_HINT) from None

        def log(level, text, user_data):  # pragma: no cover - called from C
            if level in (3, 4):  # warnings and errors (this build's levels): kept for our own error messages
                _ERRORS.append(text.decode("utf-8", errors="replace").strip())
                del _ERRORS[:-20]

        _LOG_CALLBACK = llama_cpp.llama_log_callback(log)
        llama_cpp.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
        _MODULE = llama_cpp
    return _MODULE


def clear_errors() -> None:
    """Forget what llama.cpp logged so far (before a call whose failure ``last_error`` will explain)."""
    _ERRORS.clear()


def last_error() -> str:
    """What llama.cpp logged since the last call that cleared the log, in one short line."""
    parts = [e.split(": ", 1)[-1] for e in _ERRORS if e]
    return "; ".join(dict.fromkeys(parts))[:240] or "no message"


_ARRAY_TYPES: dict = {}  # element count -> ctypes array type (building one costs more than the copy)


def copy_floats(ptr, rows: int, width: int) -> np.ndarray:
    """A copy of a llama.cpp output buffer ``ptr`` (float [rows, width]), valid after the next pass."""
    return _view_at(ctypes.addressof(ptr.contents), rows * width).reshape(rows, width).copy()


def _view_at(address: int, n: int) -> np.ndarray:
    """The n floats at ``address`` in llama.cpp's memory, as a numpy array over them (no copy)."""
    kind = _ARRAY_TYPES.get(n) or _ARRAY_TYPES.setdefault(n, ctypes.c_float * n)
    return np.frombuffer(kind.from_address(address), dtype=np.float32, count=n)


_LOGITS_AT = None  # llama_get_logits returning the address as an int (llama-cpp-python's returns a float pointer)
_VIEWS: dict = {}  # (address, floats) -> a numpy array over llama.cpp's logits buffer there


def argmax_logits(ctx, rows: int, width: int) -> list[tuple[int, float]]:
    """Each of the ``rows`` output rows of the last pass (float [rows, width] in llama.cpp's logits buffer) -> (its
    argmax, the logit there), read in place. numpy's argmax picks a NaN first, so the logit is NaN where the row
    holds one. Right after a pass every library call runs cold (docs/backends.md): a copy of the logits, a new
    numpy array over the buffer and reading the pointer's address cost ~120 us a token together; the buffer moves
    only when llama.cpp grows it, so the array over it is made once per address and size."""
    global _LOGITS_AT
    if _LOGITS_AT is None:  # the same C function, declared to return an address
        entry = ctypes.cast(require_llama_cpp().llama_get_logits, ctypes.c_void_p).value
        _LOGITS_AT = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)(entry)
    key = (_LOGITS_AT(ctx), rows * width)
    view = _VIEWS.get(key)
    if view is None:
        view = _VIEWS[key] = _view_at(*key)
    if rows == 1:
        best = int(view.argmax())
        return [(best, float(view[best]))]
    ids = view.reshape(rows, width).argmax(-1).tolist()
    return [(i, float(view[r * width + i])) for r, i in enumerate(ids)]


def split_rows(pairs: list[tuple[int, float]], n: list[int]) -> tuple[list[list[int]], list[list[float]]]:
    """``argmax_logits``'s (id, logit) pairs of every fed token, row after row (n[b] for row b) -> (ids, logits)
    per row."""
    ids, top, at = [], [], 0
    for k in n:
        ids.append([i for i, _ in pairs[at : at + k]])
        top.append([v for _, v in pairs[at : at + k]])
        at += k
    return ids, top


def scatter_rows(got: np.ndarray, wanted: list[bool]) -> np.ndarray:
    """got [sum(wanted), W]: the rows of the wanted entries -> [len(wanted), W] with zeros for the others."""
    if len(got) == len(wanted):
        return got
    out = np.zeros((len(wanted), got.shape[1]), dtype=got.dtype)
    out[np.flatnonzero(wanted)] = got
    return out


def ragged_rows(flat: np.ndarray, n: list[int]) -> torch.Tensor:
    """Logits of the flattened rows [sum n, V] -> [B, max n, V] (zeros after a row's own tokens)."""
    if len(n) == 1:
        return torch.from_numpy(flat.reshape(1, n[0], flat.shape[1]))  # one torch call (each costs, see step)
    width = max(n)
    out = torch.empty(len(n), width, flat.shape[1])  # zeroing it all first cost ~5 ms at 16 rows of 9 (28 MB)
    at = 0
    for b, k in enumerate(n):
        out[b, :k] = torch.from_numpy(flat[at : at + k])
        if k < width:
            out[b, k:] = 0.0
        at += k
    return out


def save_sequence(ctx, seq: int, buffer) -> np.ndarray:
    """The cells of sequence ``seq`` (positions, K and V) copied into host memory -> uint8 bytes, a view of
    ``buffer(nbytes)`` (a uint8 array of at least that size)."""
    lib = require_llama_cpp()
    size = lib.llama_state_seq_get_size(ctx, seq)
    blob = buffer(size)
    got = lib.llama_state_seq_get_data(ctx, blob.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)), size, seq)
    return blob[:got]


def restore_sequence(ctx, blob: np.ndarray, seq: int) -> bool:
    """Cells saved by ``save_sequence`` written back as sequence ``seq`` (wherever the cache has room) -> whether
    they fit."""
    lib = require_llama_cpp()
    return lib.llama_state_seq_set_data(ctx, blob.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)), blob.size, seq) > 0


# llama.cpp's CPU flash attention takes a tiled path (Q in float32) from this many query tokens in one ubatch, and
# below it a per-query path (Q in float16) whose result for a token depends only on its own sequence's cells; with
# Q8_0 activations re-quantized in every layer the two paths' logits differ by up to ~0.5-0.9 (docs/backends.md)
FA_TILE = 64


def plan_ubatches(count: int, n_batch: int, prompt_rows: list | None = None) -> list[tuple[int, int]]:
    """A pass of ``count`` entries -> (start, end) of each ``llama_decode`` call, in order, so that every row's
    tokens take the attention path they take when the row is alone. A step (no ``prompt_rows``: one-token decoding,
    drafts, tree nodes): calls of fewer than ``FA_TILE`` tokens, the per-query path of a row decoding alone, whatever
    the batch. A prompt (``prompt_rows``: the row of each entry, a row's entries consecutive): each row's tokens in
    pieces of ``n_batch`` from its start (as llama-cpp-python prefills them alone); pieces of ``FA_TILE`` tokens or
    more share calls (the tiled path, as alone), shorter ones share calls of fewer than ``FA_TILE`` tokens."""
    small = FA_TILE - 1
    if prompt_rows is None:
        return [(s, min(s + small, count)) for s in range(0, count, small)]
    calls: list[list] = []  # [start, end, tiled]
    for a, b in _prompt_pieces(prompt_rows, n_batch):
        if b - a >= FA_TILE:
            if calls and calls[-1][2] and b - calls[-1][0] <= n_batch:
                calls[-1][1] = b
            else:
                calls.append([a, b, True])
            continue
        while a < b:  # the per-query path: a row's tokens may be split between calls
            if calls and not calls[-1][2] and calls[-1][1] - calls[-1][0] < small:
                calls[-1][1] = a = min(b, calls[-1][0] + small)
            else:
                calls.append([a, min(b, a + small), False])
                a = calls[-1][1]
    return [(a, b) for a, b, _ in calls]


def _prompt_pieces(rows: list, n_batch: int) -> list[tuple[int, int]]:
    """Each row's run of entries cut into pieces of ``n_batch`` from its start -> (start, end) in order."""
    pieces, start = [], 0
    for i in range(1, len(rows) + 1):
        if i == len(rows) or rows[i] != rows[start]:
            pieces += [(a, min(a + n_batch, i)) for a in range(start, i, n_batch)]
            start = i
    return pieces
