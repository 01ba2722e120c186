"""A one-line progress display on stderr: files done/total, resources, resources/s.

On a terminal the line is redrawn in place (at most 10 times a second); otherwise (a log file, CI)
a plain line is written when a file finishes, at most once a second, plus a last one at the end.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(
        self, total_files: int, stream: TextIO | None = None, enabled: bool = True
    ) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and self.stream.isatty()
        self.total_files = total_files
        self.files = 0
        self.resources = 0
        self.failed = 0
        self.started = time.monotonic()
        self._last = 0.0
        self._width = 0

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.resources / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        failed = f", {self.failed:,} failed" if self.failed else ""
        return (
            f"files {self.files}/{self.total_files}, {self.resources:,} resources{failed}, "
            f"{self.rate:,.0f} resources/s"
        )

    def advance(self, resources: int = 0, failed: int = 0, file_done: bool = False) -> None:
        self.resources += resources
        self.failed += failed
        if file_done:
            self.files += 1
        self._show(file_done)

    def _show(self, file_done: bool, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty:
            if final or now - self._last >= 0.1:
                text = self.line()
                pad = " " * max(0, self._width - len(text))
                self.stream.write(f"\r{text}{pad}")
                self._width = len(text)
                self.stream.flush()
                self._last = now
        elif final or (file_done and now - self._last >= 1.0):
            self.stream.write(self.line() + "\n")
            self.stream.flush()
            self._last = now

    def close(self) -> None:
        if not self.enabled:
            return
        self._show(False, final=True)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
