"""The `o1search` command line. Only this module parses arguments; library code takes
config dataclasses."""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
from typing import Sequence


class UsageError(Exception):
    """A mistake the user can fix; printed as one line, exit code 2, no traceback."""


def _backend_report() -> dict:
    """Which attention/kernel backends can run on this machine, and why not when not."""
    report: dict = {}
    try:
        import torch

        cuda = torch.cuda.is_available()
        report["torch"] = {"usable": True, "version": torch.__version__, "cuda": cuda}
    except ImportError as exc:  # pragma: no cover - torch is a dependency
        return {"torch": {"usable": False, "why": str(exc)}}
    import os

    if importlib.util.find_spec("triton") is None:
        report["triton"] = {"usable": False, "why": "triton is not installed (pip install o1search[triton])"}
    else:
        import triton

        interp = os.environ.get("TRITON_INTERPRET") == "1"
        usable = cuda or interp
        report["triton"] = {
            "usable": usable,
            "version": triton.__version__,
            "mode": "gpu" if cuda else ("interpreter (CPU, slow; for tests)" if interp else None),
        }
        if not usable:
            report["triton"]["why"] = "no CUDA GPU (set TRITON_INTERPRET=1 to run kernels on CPU for testing)"
    if importlib.util.find_spec("flash_attn") is None:
        report["flash_attn"] = {"usable": False, "why": "flash-attn is not installed (optional extra, GPU only)"}
    else:
        report["flash_attn"] = {"usable": cuda, **({} if cuda else {"why": "needs a CUDA GPU"})}
    return report


def cmd_info(args: argparse.Namespace) -> int:
    info: dict = {"python": platform.python_version(), "platform": platform.platform()}
    try:
        from o1search import _native

        core = _native.core
        info.update(
            version=core.__version__,
            native_core=True,
            cuda_sources_built=bool(core.cuda_built),
            sanitizers=core.sanitize or None,
        )
    except ImportError as exc:
        info.update(native_core=False, native_core_error=str(exc))
    info["kernel_backends"] = _backend_report()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"o1search {info.get('version', '?')}  (python {info['python']}, {info['platform']})")
    print(f"  native core (o1search._core): {'built' if info['native_core'] else 'MISSING'}")
    if info["native_core"]:
        print(f"  CUDA sources compiled:        {'yes' if info['cuda_sources_built'] else 'no'}")
        if info.get("sanitizers"):
            print(f"  sanitizers:                   {info['sanitizers']}")
    else:
        print(f"    {info['native_core_error']}")
    print("  kernel backends:")
    for name, b in info["kernel_backends"].items():
        state = "usable" if b.get("usable") else "not usable"
        extra = b.get("version", "")
        if b.get("mode"):
            extra += f", {b['mode']}"
        if b.get("why"):
            extra += f" — {b['why']}"
        print(f"    {name:<11} {state}{(' (' + extra.strip(', ') + ')') if extra else ''}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="o1search", description=__doc__)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    pi = sub.add_parser("info", help="version, native core and CUDA build, usable kernel backends")
    pi.add_argument("--json", action="store_true", help="print JSON")
    pi.set_defaults(func=cmd_info)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"o1search: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
