"""The one exception type a user sees: a mistake in their input, told in one line."""


class CnnlabError(Exception):
    """Bad input from the user (an option, a file, a data set). The CLI prints it and exits 2."""


class ConfigError(CnnlabError):
    """A config value or YAML key that cnnlab cannot use."""


class DataError(CnnlabError):
    """A data source that is missing, malformed or unusable for the model."""


class TrainingDiverged(CnnlabError):
    """The loss became NaN or infinite (the CLI exits 1: the input was fine, the run failed)."""
