"""The `flowbridge` command: validate | run | runs | sandbox | demo | import-appflow | export-appflow
| oauth."""

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
    p.add_argument(
        "--partition",
        metavar="KEY",
        help="a partitioned flow's partition (2024-03-01), or FIRST...LAST in one run",
    )

    p = sub.add_parser("runs", help="one flow's runs, newest first, from the audit log")
    p.add_argument("flow")
    p.add_argument("--limit", type=int, default=20, help="at most this many runs (default 20)")

    p = sub.add_parser(
        "sandbox", help="run the local SaaS sandboxes (Salesforce, HubSpot, Zendesk...) from --port"
    )
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--records", type=int, default=5000)
    p.add_argument("--seed", type=int, default=7)

    sub.add_parser("demo", help="sandbox -> example flow -> local lake, then a summary")

    p = sub.add_parser("import-appflow", help="an AppFlow flow (JSON) as a flow file")
    p.add_argument("file", help="CreateFlow request, describe-flow answer or CloudFormation")
    p.add_argument("-o", "--output", help="flow file to write (default: flow_defs/<name>.yaml)")
    p.add_argument("--force", action="store_true", help="replace the output if it exists")

    p = sub.add_parser("export-appflow", help="a flow file as an AppFlow CreateFlow request")
    p.add_argument("flow", help="the flow file")
    p.add_argument("-o", "--output", help="JSON file to write (default: standard output)")

    p = sub.add_parser(
        "oauth", help="a connection's OAuth refresh token, from a browser sign-in, into .env"
    )
    p.add_argument("connection", help="a connection of connections.yaml (refresh_token: ${VAR})")
    p.add_argument("--port", type=int, default=0,
                   help="the redirect listener's port on 127.0.0.1 (default: a free one); fix "
                        "it to the port of the redirect URL registered with the OAuth app")  # fmt: skip
    p.add_argument("--no-browser", action="store_true", help="print the URL, open no browser")
    p.add_argument("--env-file", help="where VAR=token goes (default: .env in the project root)")
    p.add_argument("--scope", action="append", help="scopes to ask for instead of the "
                   "connector's defaults (repeat, or separate with spaces or commas)")  # fmt: skip
    p.add_argument("--timeout", type=float, default=300.0,
                   help="seconds to wait for the browser's redirect (default 300)")  # fmt: skip

    args = parser.parse_args(argv)
    if args.command in ("validate", "run", "runs", "demo"):
        from flow_assets.environment import Settings, load_env_file

        load_env_file(Settings.from_env().flows_dir)
    if args.command == "validate":
        return _validate(args)
    if args.command == "run":
        from flow_assets.runner import run_flow

        return run_flow(args.flow, full_refresh=args.full_refresh, partition=args.partition)
    if args.command == "runs":
        return _runs(args)
    if args.command == "sandbox":
        from flow_assets.sandbox.serve import serve_all

        return serve_all(args.port, args.records, args.seed)
    if args.command == "demo":
        from flow_assets.demo import run_demo

        return run_demo()
    if args.command == "import-appflow":
        return _import_appflow(args)
    if args.command == "export-appflow":
        return _export_appflow(args)
    if args.command == "oauth":
        return _oauth(args)
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


def _runs(args: argparse.Namespace) -> int:
    from flow_assets.audit import TABLE, format_runs, read_runs, recorded_flows
    from flow_assets.destinations.lake import Lake
    from flow_assets.environment import Settings
    from flow_assets.spec.errors import did_you_mean

    lake = Lake(Settings.from_env().lake_dir)
    runs = read_runs(lake, args.flow, max(args.limit, 1))
    if runs.is_empty():
        hint = did_you_mean(args.flow, recorded_flows(lake))
        print(f"no runs of flow '{args.flow}' in the audit log {lake.table_dir(TABLE)}{hint}",
              file=sys.stderr)  # fmt: skip
        return 1
    print(format_runs(runs))
    return 0


def _import_appflow(args: argparse.Namespace) -> int:
    from flow_assets.environment import Settings
    from flow_assets.spec import FlowFileError
    from flow_assets.spec.appflow import (
        connection_notes,
        import_appflow,
        known_connectors,
        read_json,
        to_yaml,
    )

    source = Path(args.file)
    folder = Path(args.output).parent if args.output else Settings.from_env().flows_dir
    try:
        # connections.yaml beside the flow file says what a CustomConnector profile reaches.
        imported = import_appflow(read_json(source), str(source), known_connectors(folder))
    except FlowFileError as exc:
        for problem in exc.problems:
            print(f"error: {_relative(problem)}", file=sys.stderr)
        return 1
    name = imported.result["name"]
    out = Path(args.output) if args.output else folder / f"{name}.yaml"
    if out.exists() and not args.force:
        print(f"error: {_relative(out)} exists; pass --force to replace it, or -o", file=sys.stderr)
        return 1
    for line in imported.not_carried:
        print(f"not carried over: {line}", file=sys.stderr)
    for line in [*imported.notes, *connection_notes(imported.result, out.parent)]:
        print(f"note: {_relative(line)}", file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_yaml(imported, source.name), encoding="utf-8")
    print(f"wrote {_relative(out)}")
    return 0


def _export_appflow(args: argparse.Namespace) -> int:
    import json

    from flow_assets.spec import FlowFileError
    from flow_assets.spec.appflow_export import export_file

    try:
        exported = export_file(Path(args.flow))
    except FlowFileError as exc:
        for problem in exc.problems:
            print(f"error: {_relative(problem)}", file=sys.stderr)
        return 1
    for line in exported.not_carried:
        print(f"not expressible in AppFlow: {line}", file=sys.stderr)
    for line in exported.notes:
        print(f"note: {line}", file=sys.stderr)
    text = json.dumps(exported.result, indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _oauth(args: argparse.Namespace) -> int:
    from flow_assets.connectors.oauth_bootstrap import BootstrapError, bootstrap
    from flow_assets.environment import Settings
    from flow_assets.spec import FlowFileError

    try:
        bootstrap(
            args.connection, Settings.from_env().flows_dir,
            env_file=Path(args.env_file).resolve() if args.env_file else None, port=args.port,
            open_browser=not args.no_browser, timeout=args.timeout, scopes=args.scope,
            say=lambda line: print(line, flush=True),
        )  # fmt: skip
    except FlowFileError as exc:
        for problem in exc.problems:
            print(f"error: {_relative(problem)}", file=sys.stderr)
        return 1
    except BootstrapError as exc:
        print(f"error: {_relative(exc)}", file=sys.stderr)
        return 1
    return 0


def _relative(problem: object) -> str:
    text = str(problem)
    cwd = os.getcwd() + os.sep
    return text.replace(cwd, "")


if __name__ == "__main__":
    sys.exit(main())
