"""The one exception type a user sees: a mistake in their input, told in one line."""

from __future__ import annotations

from collections.abc import Sequence


def listed(names: Sequence[str], limit: int = 10) -> str:
    """The first ``limit`` names, comma-separated, and how many more: a list that fits one line."""
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


class CnnlabError(Exception):
    """Bad input from the user (an option, a file, a data set). The CLI prints it and exits 2."""


class ConfigError(CnnlabError):
    """A config value or YAML key that cnnlab cannot use."""


class DataError(CnnlabError):
    """A data source that is missing, malformed or unusable for the model."""


class TrainingDiverged(CnnlabError):
    """The loss became NaN or infinite (the CLI exits 1: the input was fine, the run failed)."""
