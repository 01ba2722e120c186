"""Policy decisions as values, and the combinators that fold them.

A Decision names the rule that decided, so a 403/404 body and the audit trail can say why
without revealing data (HAPI's AuthorizationInterceptor habit).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Effect = Literal["permit", "deny"]


@dataclass(frozen=True)
class Decision:
    effect: Effect
    reason: str
    rule: str

    @property
    def permitted(self) -> bool:
        return self.effect == "permit"


def permit(reason: str, rule: str) -> Decision:
    return Decision("permit", reason, rule)


def deny(reason: str, rule: str) -> Decision:
    return Decision("deny", reason, rule)


DEFAULT_DENY = deny("no rule permits this access", "default-deny")


def deny_overrides(decisions: Iterable[Decision]) -> Decision:
    """Any deny wins; else the first permit; with nothing decisive, default deny."""
    first_permit: Decision | None = None
    for decision in decisions:
        if decision.effect == "deny":
            return decision
        if first_permit is None:
            first_permit = decision
    return first_permit or DEFAULT_DENY


def first_decisive(decisions: Iterable[Decision | None]) -> Decision:
    """The first rule that has an opinion (None means "not applicable"); default deny."""
    for decision in decisions:
        if decision is not None:
            return decision
    return DEFAULT_DENY
