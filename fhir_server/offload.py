"""CPU-heavy steps of a request (a transaction Bundle's validation and documents), run off the
event loop so that other requests' database round trips are not held up behind them.

One worker thread: the server runs on one CPU, so more threads would only take turns at the GIL,
and each more thread would delay the event loop's turn (every switch interval, which app.py sets
to 1 ms) further."""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

_P = ParamSpec("_P")
_T = TypeVar("_T")
_WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="phr-cpu")


async def off_loop(fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """`fn(*args, **kwargs)` in the worker thread (with this task's context variables)."""
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_WORKER, call)
