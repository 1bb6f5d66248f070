"""Errors of the flow language: each names the file, the field path and how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a flow or connections file."""

    file: str
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.path}: " if self.path else f"{self.file}: "
        return where + self.message


class FlowFileError(ValueError):
    """A flow file (or connections file) cannot be used; carries every problem found in it."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    @classmethod
    def single(cls, file: str, path: str, message: str) -> FlowFileError:
        return cls([Problem(file, path, message)])


class ProblemList(list[Problem]):
    """Collects problems so that one pass reports all of them, not just the first."""

    def add(self, file: str, path: str, message: str) -> None:
        self.append(Problem(file, path, message))

    def raise_if_any(self) -> None:
        if self:
            raise FlowFileError(self)


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """A ' (did you mean 'X'?)' suffix when a close candidate exists, else ''."""
    candidates = list(candidates)
    lowered = {c.lower(): c for c in candidates}
    if name.lower() in lowered:
        return f" (did you mean '{lowered[name.lower()]}'?)"
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
