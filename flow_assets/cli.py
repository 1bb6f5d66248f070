"""The `flowbridge` command: validate | run | sandbox | demo."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flowbridge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check every flow file; non-zero exit on any problem")
    p.add_argument("dir", nargs="?", default=None, help="flows folder (default: flow_defs)")
    p.add_argument("--offline", action="store_true", help="do not contact the sources")

    p = sub.add_parser("run", help="materialize one flow now, in this process")
    p.add_argument("flow")
    p.add_argument("--full-refresh", action="store_true", help="ignore the stored cursor")

    p = sub.add_parser("sandbox", help="run the local Salesforce-compatible server")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--records", type=int, default=5000)
    p.add_argument("--seed", type=int, default=7)

    sub.add_parser("demo", help="sandbox -> example flow -> local lake, then a summary")

    args = parser.parse_args(argv)
    if args.command == "validate":
        return _validate(args)
    if args.command == "run":
        from flow_assets.runner import run_flow

        return run_flow(args.flow, full_refresh=args.full_refresh)
    if args.command == "sandbox":
        from flow_assets.sandbox.salesforce import serve_forever_cli

        return serve_forever_cli(
            ["--port", str(args.port), "--records", str(args.records), "--seed", str(args.seed)]
        )
    if args.command == "demo":
        from flow_assets.demo import run_demo

        return run_demo()
    return 2


def _validate(args: argparse.Namespace) -> int:
    from flow_assets.environment import Settings
    from flow_assets.validate import validate_project

    root = Path(args.dir).resolve() if args.dir else Settings.from_env().flows_dir
    if not root.is_dir():
        print(f"{root}: not a folder of flow files", file=sys.stderr)
        return 2
    report = validate_project(root, online=not args.offline)
    for note in report.notes:
        print(f"note: {_relative(note)}", file=sys.stderr)
    for problem in report.problems:
        print(f"error: {_relative(problem)}", file=sys.stderr)
    for name in report.flows_ok:
        print(f"ok: {name}")
    if report.problems:
        print(f"{len(report.problems)} problem(s) found", file=sys.stderr)
        return 1
    return 0


def _relative(problem: object) -> str:
    text = str(problem)
    cwd = os.getcwd() + os.sep
    return text.replace(cwd, "")


if __name__ == "__main__":
    sys.exit(main())
