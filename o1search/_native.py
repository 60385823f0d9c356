"""Loads the compiled core, with a message that says what to do when it is missing."""

from __future__ import annotations

try:
    from o1search import _core as core  # noqa: F401
except ImportError as exc:  # pragma: no cover - only on a broken install
    raise ImportError(
        "o1search's native core (o1search._core) is not built. Install the package with "
        "`pip install .` (or `pip install --no-build-isolation -e .` for development, or run "
        "tools/dev_build.sh and put the repository on PYTHONPATH)."
    ) from exc

O1SearchError = core.O1SearchError
OutOfPagesError = core.OutOfPagesError
StaleHandleError = core.StaleHandleError
InternalError = core.InternalError
