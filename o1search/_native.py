"""Loads the compiled core, with a message that says what to do when it is missing."""

from __future__ import annotations

from pathlib import Path


def _missing_core_message() -> str:  # pragma: no cover - broken installs only
    """What to tell the user when ``o1search._core`` cannot be imported."""
    package_dir = Path(__file__).resolve().parent
    checkout = package_dir.parent
    if (checkout / "pyproject.toml").is_file():
        # Python picked up the package from a source checkout (the current directory or
        # PYTHONPATH) that has no compiled extension, possibly in front of an installed copy.
        return (
            f"o1search's native core (o1search._core) is not built in the source tree at "
            f"{checkout}, and that tree is shadowing any installed o1search: Python imported "
            f"the package from {package_dir}. Run from outside the checkout, or use `pytest` "
            "rather than `python -m pytest` from the repository root (`-m` puts the current "
            "directory first on sys.path), or build the core in place with tools/dev_build.sh "
            "(or `pip install --no-build-isolation -e .`)."
        )
    return (
        "o1search's native core (o1search._core) is not built. Install the package with "
        "`pip install .` (or `pip install --no-build-isolation -e .` for development, or run "
        "tools/dev_build.sh and put the repository on PYTHONPATH)."
    )


try:
    import o1search._core as core
except ImportError as exc:  # pragma: no cover - only on a broken install
    raise ImportError(_missing_core_message()) from exc

O1SearchError = core.O1SearchError
OutOfPagesError = core.OutOfPagesError
StaleHandleError = core.StaleHandleError
InternalError = core.InternalError
