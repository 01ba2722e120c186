"""What a load (or a dry run) did, per resource type, and the summary table printed at the end."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TextIO

LOADED, UNCHANGED, FAILED = "loaded", "unchanged", "failed"
VALID, INVALID = "valid", "invalid"


@dataclass
class Failure:
    """A file, or a Bundle posted for it, that did not load completely."""

    source: str
    messages: list[str]
    status: int | None = None  # the HTTP status, when the server answered

    def render(self, limit: int = 8) -> list[str]:
        head = f"  {self.source}" + (f" (HTTP {self.status})" if self.status else "") + ":"
        lines = [head]
        lines += [f"      {m}" for m in self.messages[:limit]]
        if len(self.messages) > limit:
            lines.append(f"      ... and {len(self.messages) - limit} more")
        return lines


@dataclass
class Report:
    dry_run: bool = False
    files: int = 0
    bundles: int = 0
    counts: dict[str, Counter[str]] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    warnings: list[Failure] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    def count(self, resource_type: str, outcome: str, n: int = 1) -> None:
        self.counts.setdefault(resource_type, Counter())[outcome] += n

    def merge(self, other: Report) -> None:
        for rtype, counts in other.counts.items():
            self.counts.setdefault(rtype, Counter()).update(counts)
        self.failures.extend(other.failures)
        self.warnings.extend(other.warnings)

    def total(self, outcome: str) -> int:
        return sum(c[outcome] for c in self.counts.values())

    @property
    def resources(self) -> int:
        return sum(sum(c.values()) for c in self.counts.values())

    @property
    def ok(self) -> bool:
        bad = INVALID if self.dry_run else FAILED
        return not self.failures and self.total(bad) == 0

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    def finish(self) -> Report:
        self.finished = time.monotonic()
        return self

    def table(self) -> list[str]:
        columns = (VALID, INVALID) if self.dry_run else (LOADED, UNCHANGED, FAILED)
        names = sorted(self.counts)
        width = max([len("resource type"), len("total"), *map(len, names)])
        header = f"{'resource type':<{width}}" + "".join(f"  {c:>9}" for c in columns)
        lines = [header, "-" * len(header)]
        for name in names:
            lines.append(
                f"{name:<{width}}" + "".join(f"  {self.counts[name][c]:>9,}" for c in columns)
            )
        lines.append("-" * len(header))
        lines.append(f"{'total':<{width}}" + "".join(f"  {self.total(c):>9,}" for c in columns))
        return lines

    def render(self, out: TextIO) -> None:
        rate = self.resources / self.elapsed if self.elapsed > 0 else 0.0
        if self.dry_run:
            print(
                f"Dry run: {self.files} files, {self.resources:,} resources checked in "
                f"{self.elapsed:.1f} s; nothing was written.",
                file=out,
            )
        else:
            print(
                f"Loaded {self.files} files ({self.bundles} Bundles posted) in "
                f"{self.elapsed:.1f} s: {self.resources:,} resources, {rate:,.0f} resources/s.",
                file=out,
            )
        print(file=out)
        for line in self.table():
            print(line, file=out)
        if self.warnings:
            print(f"\nWarnings ({len(self.warnings)}):", file=out)
            for warning in self.warnings:
                for line in warning.render():
                    print(line, file=out)
        if self.failures:
            title = "Problems" if self.dry_run else "Failed"
            print(f"\n{title} ({len(self.failures)}):", file=out)
            for failure in self.failures:
                for line in failure.render():
                    print(line, file=out)
        print("\nOK" if self.ok else "\nFAILED", file=out)
