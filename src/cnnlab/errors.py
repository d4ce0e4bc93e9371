"""The one exception type a user sees: a mistake in their input, told in one line."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Self

_PACKAGE = str(Path(__file__).resolve().parent) + os.sep


def listed(names: Sequence[str], limit: int = 10) -> str:
    """The first ``limit`` names, comma-separated, and how many more: a list that fits one line."""
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def shown(value: object) -> str:
    """``value`` as a message quotes what it was given: its repr, cut to fit a line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_CONTROL_ESCAPES = {code: repr(chr(code))[1:-1] for code in [*range(32), 127]}


def one_line(text: str) -> str:
    """``text`` with its line breaks and other control characters written as escapes (``\\n``):
    a message stays one line where it quotes a file name or a value that holds them."""
    return text.translate(_CONTROL_ESCAPES)


Spell = Callable[[str], str]
"""Writes an option's name (a config key, or a keyword of the Python API) as an interface takes it."""


class OptionNamed:
    """A message that names options: as the config and the Python API name them (``epochs``,
    ``data.val_split``, ``tta``). Each interface writes the names its own way (``respell``): the
    CLI as the flags that set them (``--val-split``), ``train()`` as its keywords
    (``val_split``), so nobody is told of a flag they never had."""

    option: str | None = None
    """The option the message is about, which it names first (None: it names options inside)."""

    @classmethod
    def about(cls, option: str, detail: str | Callable[[Spell], str], before: str = "") -> Self:
        """The message ``option`` + ``detail``: ``detail`` goes on with ": what is wrong", or with
        " VALUE: what is wrong". A detail that names other options (what to give instead) is a
        function of the ``Spell`` that writes them: ``lambda name: f"...; give {name('data')}=SPEC"``.
        ``before``: what the message says first, where the option is in a file (``config.yaml: ``)."""
        made = cls._written(lambda spell, given: before + given(option) +
                            (detail(spell) if callable(detail) else detail))
        made.option = option
        return made

    @classmethod
    def mentioning(cls, text: Callable[[Spell], str]) -> Self:
        """A message about no one option that suggests some: ``text`` writes it with the
        ``Spell`` it is given (at first, names as they are)."""
        return cls._written(lambda spell, given: text(spell))

    @classmethod
    def _written(cls, text: Callable[[Spell, Spell], str]) -> Self:
        made = cls(text(str, str))
        made._text = text
        return made

    def respell(self, spell: Spell, given: Spell | None = None) -> None:
        """Write the options the message suggests with ``spell``, the one it is about with
        ``given`` (default ``spell``): a value from a recipe is named by its config key, though
        the CLI has a flag for it. In place; each call starts from the names as they were at first."""
        if hasattr(self, "_text"):
            self.args = (self._text(spell, given or spell), *self.args[1:])

    def __str__(self) -> str:
        # one line even where it quotes a name holding a line break or another control character
        return one_line(super().__str__())

    def __reduce__(self):
        # as the message reads now: a process pool sends errors back pickled, and the function
        # that writes the names is not picklable
        return type(self), self.args, {"option": self.option}


class CnnlabError(OptionNamed, Exception):
    """Bad input from the user (an option, a file, a data set). The CLI prints it and exits 2."""


class ConfigError(CnnlabError):
    """A config value or YAML key that cnnlab cannot use."""


class DataError(CnnlabError):
    """A data source that is missing, malformed or unusable for the model."""


class TrainingDiverged(CnnlabError):
    """The loss became NaN or infinite (the CLI exits 1: the input was fine, the run failed)."""


class CnnlabWarning(OptionNamed, UserWarning):
    """Something the user may not mean (a test-time augmentation that does not fit the run)."""


def callers_stacklevel() -> int:
    """The ``stacklevel`` for a ``warnings.warn`` in the function that calls this one that
    points at the first line outside cnnlab: the user's call, however deep in cnnlab the
    warning is raised (Python 3.12's ``skip_file_prefixes``)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level
