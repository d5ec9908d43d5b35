"""The one error type users see."""

from __future__ import annotations


class DistillbenchError(Exception):
    """A problem with the user's input, reported without a traceback.

    The message names the file, the key and the fix, e.g.
    ``suites/math.yaml: tasks[2].metric: 'acc' is not produced by the task; use one of: exact_match``.
    """

    def __init__(self, message: str, *, path: object | None = None, key: str | None = None,
                 fix: str | None = None) -> None:
        parts = []
        if path is not None:
            parts.append(str(path))
        if key:
            parts.append(key)
        head = ": ".join(parts)
        text = f"{head}: {message}" if head else message
        if fix:
            text = f"{text}\n  fix: {fix}"
        super().__init__(text)
        self.path = path
        self.key = key
        self.fix = fix
