"""User-facing errors. The CLI prints their message as one line; nothing else is swallowed."""


class SuiteError(Exception):
    """An error the user can fix: the message says what failed, where, and how to fix it."""

    exit_code = 1


class UsageError(SuiteError):
    """A bad flag or option value; the message names the flag."""

    exit_code = 2


class UnknownNameError(UsageError, KeyError):
    """An unknown model, task or protocol name; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class DataNotFoundError(SuiteError, FileNotFoundError):
    """A dataset, split or file is missing: names the task, the expected layout and the source."""


class CorruptDataError(SuiteError, ValueError):
    """A file exists but cannot be parsed: names the file and what is wrong with it."""


class PluginError(SuiteError, ImportError):
    """A task or model-family plugin failed to load or breaks its contract; names the plugin."""


class TrackingError(SuiteError, ConnectionError):
    """The MLflow tracking server is unreachable or refuses the request."""


class MissingExtraError(SuiteError, ImportError):
    """A feature's package is not installed; the message names the extra that installs it."""

    @classmethod
    def for_feature(cls, feature: str, extra: str, err: ImportError) -> "MissingExtraError":
        return cls(f"{feature} needs the package of the suite's '{extra}' extra ({err}): "
                   f"pip install 'spikformer-suite[{extra}]'")
