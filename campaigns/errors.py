"""Every error Retain raises on purpose, in one tree.

A user never sees a traceback for bad input: the CLI catches ``RetainError``, prints
``str(error)`` and exits non-zero. Each subclass also inherits the builtin it resembles, so
callers that only know Python's exceptions still catch it.

    RetainError
    ├── ConfigError(ValueError)            invalid or missing setting (names the setting and source)
    ├── DatabaseError                      cannot reach/migrate the store (names the URL, without password)
    ├── ImportValidationError(ValueError)  a file failed validation; carries the list of problems
    ├── NotFoundError(LookupError)         unknown customer, campaign, run, model file ...
    ├── TemplateError(ValueError)          a campaign/template is invalid (file, line, what)
    │   └── RenderError                    a template failed while rendering for one customer
    ├── ModelError(ValueError)             a recommender model file is corrupt or mismatched
    ├── SenderError                        a sender failed to deliver (carries the SMTP code if any)
    │   └── SenderPausedError              too many consecutive failures: the run is paused
    ├── TokenError(ValueError)             a signed unsubscribe/feedback token is forged or expired
    ├── RunBusyError                       another live process holds the run's lease
    ├── LeaseLostError                     this process's lease was taken over: it stops, recording nothing
    └── SchedulerError                     the scheduler cannot start (e.g. another one holds the lock)
"""

from __future__ import annotations

from collections.abc import Sequence


class RetainError(Exception):
    """Base of every error Retain raises on purpose; ``str()`` is the message for the user."""


class ConfigError(RetainError, ValueError):
    """A setting is missing or invalid."""


class DatabaseError(RetainError):
    """The store cannot be opened, migrated or queried."""


class NotFoundError(RetainError, LookupError):
    """Something named by the user does not exist."""


class ImportValidationError(RetainError, ValueError):
    """A file did not validate; ``problems`` holds ``file:line: column: what`` strings.

    ``str()`` shows the first 20 problems and a count of the rest.
    """

    MAX_SHOWN = 20

    def __init__(self, path: str, problems: Sequence[str], total: int | None = None) -> None:
        self.path = path
        self.problems = list(problems)
        self.total = total if total is not None else len(self.problems)
        shown = self.problems[: self.MAX_SHOWN]
        lines = [f"{path}: {self.total} problem(s); nothing was imported."]
        lines += shown
        if self.total > len(shown):
            lines.append(
                f"... and {self.total - len(shown)} more (use --skip-invalid to import the valid rows)"
            )
        super().__init__("\n".join(lines))


class TemplateError(RetainError, ValueError):
    """A campaign template or its front matter is invalid."""

    def __init__(self, message: str, *, template: str | None = None, line: int | None = None) -> None:
        self.template = template
        self.line = line
        where = template or ""
        if template and line:
            where = f"{template}:{line}"
        super().__init__(f"{where}: {message}" if where else message)


class RenderError(TemplateError):
    """A template failed while rendering one customer's email."""


class ModelError(RetainError, ValueError):
    """A recommender model file is corrupt, or was trained on other data."""


class SenderError(RetainError):
    """A message could not be handed to the sender.

    ``code`` is the SMTP reply code when there was one; ``permanent`` is True for 5xx replies
    and invalid recipients (never retried).
    """

    def __init__(self, message: str, *, code: int | None = None, permanent: bool = False) -> None:
        self.code = code
        self.permanent = permanent
        super().__init__(message)


class SenderPausedError(SenderError):
    """Too many consecutive failures: the run stopped so as not to burn the list; rerun to resume."""


class TokenError(RetainError, ValueError):
    """A signed token is forged, malformed, expired or for another purpose."""


class RunBusyError(RetainError):
    """Another live process holds this run's lease (wait for it, or use another run key)."""


class LeaseLostError(RetainError):
    """Another process took over this process's lease; the loser stops before recording anything."""


class SchedulerError(RetainError):
    """The scheduler cannot start or cannot sync its jobs."""
