"""The one error type of acards.

Every problem acards reports to a user has a stable ``code`` (a dotted, lowercase name such as
``yaml.alias`` or ``evidence.digest-mismatch``), a ``location`` (file, line and column, JSON
pointer — whichever are known) and a ``hint`` that says what to do about it.  Validation collects
every problem it can find and raises them together; the CLI prints them and exits with the lowest
exit status among them.  Every code is declared once, with its exit status and its section of
docs/errors.md, in :mod:`acards.errors.codes`; a Problem with an undeclared code is a bug and
refuses to be built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from acards.errors import codes


@dataclass(frozen=True)
class Location:
    """Where a problem is: any of file, 1-based line and column, and a JSON pointer."""

    file: str | None = None
    line: int | None = None
    column: int | None = None
    pointer: str | None = None

    def __str__(self) -> str:
        parts = []
        if self.file is not None:
            place = self.file
            if self.line is not None:
                place += f":{self.line}"
                if self.column is not None:
                    place += f":{self.column}"
            parts.append(place)
        if self.pointer is not None:
            parts.append(f"at {self.pointer or '/'}")
        return " ".join(parts)

    def to_dict(self) -> dict:
        return {"file": self.file, "line": self.line, "column": self.column, "pointer": self.pointer}


@dataclass(frozen=True)
class Problem:
    code: str
    message: str
    hint: str
    location: Location = field(default_factory=Location)

    def __post_init__(self) -> None:
        codes.lookup(self.code)  # an undeclared code is a bug: fail where it is made, not when it is reported

    @property
    def exit_code(self) -> int:
        """SPEC §8 exit status of this problem, as the catalogue declares it for the code."""
        return codes.lookup(self.code).exit_status

    def __str__(self) -> str:
        return f"{str(self.location) or 'acards'}: {self.code}: {self.message}\n  hint: {self.hint}"

    def to_dict(self) -> dict:
        return {
            "code": self.code,
            "message": self.message,
            "hint": self.hint,
            "location": self.location.to_dict(),
        }


class AcardsError(Exception):
    """One or more problems that stop the command.

    ``AcardsError(code, message, hint, location)`` for a single problem, or
    ``AcardsError.collect(problems)`` for several found together.
    """

    def __init__(self, code: str, message: str, hint: str, location: Location | None = None):
        self.problems: list[Problem] = [Problem(code, message, hint, location or Location())]
        super().__init__(str(self.problems[0]))

    @classmethod
    def collect(cls, problems: Iterable[Problem]) -> "AcardsError":
        problems = list(problems)
        if not problems:
            raise ValueError("AcardsError.collect needs at least one problem")
        first = problems[0]
        error = cls(first.code, first.message, first.hint, first.location)
        error.problems = problems
        return error

    @property
    def code(self) -> str:
        return self.problems[0].code

    @property
    def exit_code(self) -> int:
        # The most fundamental problem decides: an invalid card (2) outranks missing evidence (3).
        return min(p.exit_code for p in self.problems)

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)
