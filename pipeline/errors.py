"""The errors of the stage contract: one family for per-source problems, one for model loading.

:class:`StageError` is what every stage raises for a problem with *one source's data* (a removed
video, a corrupt PDF, unusable subtitles, a licence the run does not allow). It is a value, not a
crash: the stage runner (:meth:`pipeline.workdir.SourceRun.step`) records it in the source's row
of ``sources.parquet`` and the run goes on. Two fields say what kind of problem it is:

- ``skipped``: a policy decision (licence, duration, size), not a broken input; the row's status
  is ``skipped`` instead of ``failed``. A skip is always permanent.
- ``permanent``: a rerun would only repeat it (a 404, a truncated file), so the source is marked
  finished-as-failed and not retried; transient problems (a timeout, HTTP 503) are retried by the
  next run.

Each kind of source or stage subclasses it (``FetchError``, ``EbookError``, ``KeyframeError``,
``SubtitleError``, ``TextSourceError``, ``NarrationError``), so code that cares can tell them
apart, while flows catch one thing. Anything else raised by a stage is a bug and propagates.

:class:`ModelLoadError` is not per source: a configured model that cannot be loaded stops the
run before any source, with a message naming the model, where it was looked for and how to point
the config at a local copy. The pipeline's model stages and the StoryGen trainer share it.
"""

from __future__ import annotations

from typing import Any


class StageError(Exception):
    """A per-source problem: the message is for users; ``permanent`` and ``skipped`` classify it."""

    default_permanent = True

    def __init__(self, message: str, *, permanent: bool | None = None, skipped: bool = False):
        super().__init__(message)
        self.message = message
        self.skipped = skipped
        permanent = self.default_permanent if permanent is None else permanent
        self.permanent = permanent or skipped  # a policy skip would only be repeated

    @property
    def status(self) -> str:
        """The source's status in ``sources.parquet``: ``skipped`` or ``failed``."""
        return "skipped" if self.skipped else "failed"

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # stages run in worker processes: keep every field (permanent, skipped, url...) across pickling
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))


def _rebuild(cls: type[StageError], message: str, state: dict[str, Any]) -> StageError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class ModelLoadError(RuntimeError):
    """A configured model cannot be loaded; the message says which, from where, and what to do."""
