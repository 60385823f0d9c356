"""Training metrics: one JSON object per line (JSONL), and TensorBoard scalars when the
``tensorboard`` package is installed."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

__all__ = ["MetricsLogger"]


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no NaN/inf; keep the information as text
    if hasattr(v, "item") and callable(v.item):
        return _jsonable(v.item())
    return v


class MetricsLogger:
    """Append metric records to a JSONL file (and TensorBoard).

    Parameters:
        path: the JSONL file (parent directories are created), or None for no file.
        tensorboard_dir: a TensorBoard log directory, or None. Ignored (with
            ``tensorboard_enabled`` False) when ``torch.utils.tensorboard`` cannot be used.
        append: keep existing lines (a resumed run) instead of starting a new file.

    Each line is flushed and fsync'ed, so a crash loses at most the record being written.
    """

    def __init__(self, path: str | os.PathLike[str] | None, *,
                 tensorboard_dir: str | os.PathLike[str] | None = None,
                 append: bool = False) -> None:
        self.path = None if path is None else Path(os.fspath(path))
        self._file = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a" if append else "w", encoding="utf-8")
        self._tb = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except Exception:  # noqa: BLE001 - tensorboard is optional; any import failure
                self._tb = None
            else:
                self._tb = SummaryWriter(log_dir=os.fspath(tensorboard_dir))

    @property
    def tensorboard_enabled(self) -> bool:
        """Whether scalars also go to TensorBoard."""
        return self._tb is not None

    def log(self, record: dict[str, Any], *, step: int | None = None) -> None:
        """Write one record (a flat dict of JSON-able values); numbers also go to TensorBoard
        under their key at ``step``.

        Raises:
            TypeError: ``record`` is not a dict, or holds values JSON cannot encode.
        """
        if not isinstance(record, dict):
            raise TypeError(f"record must be a dict, got {type(record).__name__}")
        rec = {k: _jsonable(v) for k, v in record.items()}
        if self._file is not None:
            self._file.write(json.dumps(rec) + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())
        if self._tb is not None and step is not None:
            for k, v in rec.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    self._tb.add_scalar(k, v, step)
            self._tb.flush()

    def close(self) -> None:
        """Close the file and the TensorBoard writer."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
