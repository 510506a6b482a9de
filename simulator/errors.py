"""User-facing errors. Each carries the fields a person needs to act, and formats its own one-line message.

Bugs are not InfersimErrors: they propagate with a traceback (exit 1). User mistakes are (exit 2).
"""

from __future__ import annotations

from typing import Any


class InfersimError(Exception):
    """Base of every error caused by the user's input rather than by a bug."""


class ScenarioError(InfersimError):
    """A value in an input file is wrong: names the file, the dotted field, what was given and what is allowed."""

    def __init__(self, field: str, problem: str, file: str | None = None):
        self.field = field
        self.problem = problem
        self.file = file
        super().__init__(field, problem, file)

    def with_file(self, file: str) -> ScenarioError:
        return self if self.file else ScenarioError(self.field, self.problem, file)

    def __str__(self) -> str:
        where = f"{self.file}: " if self.file else ""
        field = f"{brief_text(self.field)}: " if self.field else ""
        return one_line(f"{where}{field}{self.problem}")


class CapacityError(InfersimError):
    """Something does not fit: says what, how many bytes it needs and how many there are."""

    def __init__(self, what: str, needed_bytes: float, available_bytes: float, hint: str = "",
                 file: str | None = None):
        self.what = what
        self.needed_bytes = needed_bytes
        self.available_bytes = available_bytes
        self.hint = hint
        self.file = file
        super().__init__(what, needed_bytes, available_bytes, hint, file)

    def with_file(self, file: str) -> CapacityError:
        return CapacityError(self.what, self.needed_bytes, self.available_bytes, self.hint, self.file or file)

    def __str__(self) -> str:
        where = f"{self.file}: " if self.file else ""
        msg = (f"{where}{self.what} need {self.needed_bytes / 1e9:.4g} GB, "
               f"{self.available_bytes / 1e9:.4g} GB available")
        return one_line(f"{msg}; {self.hint}" if self.hint else msg)


_CONTROL = ({i: f"\\x{i:02x}" for i in [*range(32), *range(127, 160)]} | {10: "\\n", 13: "\\r", 9: "\\t"}
            | {0x2028: "\\u2028", 0x2029: "\\u2029"})  # everything str.splitlines() breaks at, and more


def one_line(text: str) -> str:
    """The message with line breaks and other control characters escaped: an error is always one line."""
    return text.translate(_CONTROL)


def brief_text(text: str, limit: int = 120) -> str:
    """A name taken from the input (a key, a dotted field), cut to `limit` characters."""
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def brief(value: Any, limit: int = 60) -> str:
    """repr(value) for an error message, cut to `limit` characters so that one bad cell stays one short line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-2:]}"
