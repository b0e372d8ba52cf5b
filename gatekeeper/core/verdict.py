"""What a decision produces: an outcome and every reason behind it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    """Outcomes in the vocabulary of a commit status, ordered by severity."""

    SUCCESS = "success"
    PENDING = "pending"
    FAILURE = "failure"
    ERROR = "error"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {Outcome.SUCCESS: 0, Outcome.PENDING: 1, Outcome.FAILURE: 2, Outcome.ERROR: 3}

STATUS_DESCRIPTION_LIMIT = 140  # the strictest platform's limit on a status description


@dataclass(frozen=True)
class Reason:
    """One finding. `message` and `unblock` are for humans; `data` carries what the reason rests on
    (paths, reviewers, counted or not and why) for pages and tools, which never parse the prose.
    `unblock` tells a reviewer exactly what would lift it (None when nothing blocks)."""

    code: str
    outcome: Outcome
    message: str
    unblock: str | None = None
    data: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "outcome": self.outcome.value, "message": self.message,
                "unblock": self.unblock, "data": self.data}


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reasons: tuple[Reason, ...] = field(default=())
    summary: str = ""  # what a passing verdict says; blocked ones say what would unblock them
    # The humans whose approvals of the current head counted under the policy: a deployment or merge
    # of an agent's change rests on there being at least one.
    approvals: tuple[str, ...] = ()

    @classmethod
    def of(cls, reasons: list[Reason] | tuple[Reason, ...], summary: str = "",
           approvals: tuple[str, ...] = ()) -> Verdict:
        """The most severe reason wins; no blocking reason means success."""
        outcome = max((r.outcome for r in reasons), key=lambda o: o.severity, default=Outcome.SUCCESS)
        return cls(outcome=outcome, reasons=tuple(reasons), summary=summary, approvals=approvals)

    @property
    def deciding(self) -> tuple[Reason, ...]:
        return tuple(r for r in self.reasons if r.outcome == self.outcome)

    def description(self) -> str:
        """The status description, within 140 characters: for a pass, why it passes; while
        pending, what would unblock it; for a block, what happened and then what would lift it."""
        deciding = self.deciding
        if self.outcome == Outcome.SUCCESS:
            return shorten(self.summary or (deciding[-1].message if deciding else "Policy satisfied"),
                           STATUS_DESCRIPTION_LIMIT)
        first = deciding[0]
        if self.outcome == Outcome.FAILURE and first.unblock:
            text = f"{first.message.rstrip('.')}. {first.unblock}"
        else:
            text = first.unblock or first.message
        more = f" (+{len(deciding) - 1} more)" if len(deciding) > 1 else ""
        return shorten(text, STATUS_DESCRIPTION_LIMIT - len(more)) + more

    def to_dict(self) -> dict[str, object]:
        return {"outcome": self.outcome.value, "description": self.description(),
                "reasons": [r.to_dict() for r in self.reasons], "approvals": list(self.approvals)}


def shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def worst(outcomes: list[Outcome]) -> Outcome:
    """The most severe of several outcomes (e.g. of every open pull request sharing a head commit)."""
    return max(outcomes, key=lambda o: o.severity, default=Outcome.SUCCESS)
