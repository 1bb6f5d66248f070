"""`make bench`: N sandbox records through Flowbridge, dlt's REST API source and dlt fed Arrow."""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench import sandbox
from bench.child import CONTENDERS
from bench.common import PAGE_HEADERS, SOQL, Result

REPO = Path(__file__).resolve().parent.parent
FLOWBRIDGE, DLT_REST, DLT_ARROW = "flowbridge", "dlt-rest-api", "dlt-arrow"
CHILD_TIMEOUT_S = 1800
# The targets.
REST_SPEEDUP, ARROW_SPEEDUP = 10.0, 1.5
MEMORY_LIMIT_MB, MEMORY_AT_RECORDS = 400.0, 1_000_000
GROWTH_TOLERANCE = 0.10  # peak RSS at N may exceed the N/4 figure by this share and count as flat


class BenchError(RuntimeError):
    """A contender failed or its counts do not add up: the measurement is not valid."""


@dataclass
class Run:
    result: Result
    peak_rss_mb: float  # ru_maxrss of exactly this child, from wait4 in the parent


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000, help="Opportunities (N)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of A, B, C (median)")
    parser.add_argument(
        "--only",
        type=_contenders,
        default=list(CONTENDERS),
        help=f"comma-separated subset of {','.join(CONTENDERS)}",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    parser.add_argument(
        "--growth", action="store_true", help="flowbridge alone at N/4 and N: peak RSS of each"
    )
    args = parser.parse_args(argv)
    if args.records < 4 or args.rounds < 1:
        parser.error("--records must be at least 4 and --rounds at least 1")
    return args


def _contenders(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONTENDERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(CONTENDERS)}")
    return [n for n in CONTENDERS if n in names]  # always in the A, B, C order


def credentials() -> tuple[str, str]:
    return (
        os.environ.get("SALESFORCE_SANDBOX_CLIENT_ID", sandbox.CLIENT_ID),
        os.environ.get("SALESFORCE_SANDBOX_CLIENT_SECRET", sandbox.CLIENT_SECRET),
    )


def base_env(tmp: Path) -> dict[str, str]:
    """Children write only under tmp: Dagster home, dlt's data dir, no bytecode in the repo."""
    home = tmp / "dagster-home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    client_id, secret = credentials()
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {
        **os.environ,
        "PYTHONPATH": pythonpath,
        "PYTHONDONTWRITEBYTECODE": "1",
        "DAGSTER_HOME": str(home),
        "DLT_DATA_DIR": str(tmp / "dlt-data"),
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        "SALESFORCE_SANDBOX_CLIENT_ID": client_id,
        "SALESFORCE_SANDBOX_CLIENT_SECRET": secret,
    }


def run_child(name: str, workdir: Path, env: dict[str, str], keep: bool) -> Run:
    """One contender in a fresh process; its result line, and its peak RSS as wait4 reports it."""
    workdir.mkdir(parents=True)
    logs = workdir.parent / f"{workdir.name}.log"
    with logs.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.child", name, str(workdir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=env,
        )
    try:
        status, usage = _wait4(proc, CHILD_TIMEOUT_S)
    finally:
        if proc.returncode is None:
            proc.kill()
            _wait4(proc, 10)
    output = logs.read_text(errors="replace")
    result = Result.parse(output)
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    if status != 0 or result is None:
        raise BenchError(f"{name} failed (exit {status}); its output ends:\n{output[-3000:]}")
    return Run(result, round(usage.ru_maxrss / 1024, 1))


def _wait4(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, os.struct_rusage]:
    """Reap this child with os.wait4: its own rusage, unlike RUSAGE_CHILDREN's running maximum."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage
        if time.monotonic() > deadline:
            raise BenchError(f"pid {proc.pid} still running after {timeout:.0f} s")
        time.sleep(0.05)


def check(run: Run, records: int) -> list[str]:
    """Every record read is accounted for, and the destination holds what was loaded."""
    r, problems = run.result, []
    if r.records_read != records:
        problems.append(f"{r.contender}: read {r.records_read:,} records, expected {records:,}")
    if r.records_read != r.records_loaded + r.records_filtered + r.records_rejected:
        problems.append(
            f"{r.contender}: read {r.records_read:,} != loaded {r.records_loaded:,} + filtered "
            f"{r.records_filtered:,} + rejected {r.records_rejected:,}"
        )
    if r.rows_in_destination != r.records_loaded:
        problems.append(
            f"{r.contender}: {r.rows_in_destination:,} rows in the destination, "
            f"{r.records_loaded:,} loaded"
        )
    return problems


def agree(runs: dict[str, list[Run]]) -> list[str]:
    """The same transform loads the same number of records in every contender."""
    loaded = {name: {run.result.records_loaded for run in rs} for name, rs in runs.items()}
    if len(set().union(*loaded.values())) > 1:
        return [f"contenders loaded different record counts: {loaded}"]
    return []


@contextmanager
def serving(records: int, tmp: Path, env: dict[str, str]) -> Iterator[dict[str, str]]:
    """The sandbox, warmed up: the contenders' environment, naming its URL."""
    with sandbox.running(records, tmp, env) as url:
        print(
            f"Salesforce sandbox (separate process) at {url}, page cache "
            f"{sandbox.page_cache_mb(records):,} MB",
            flush=True,
        )
        warm = sandbox.warm_up(url, *credentials())
        if warm.records != records:
            raise BenchError(f"the warm-up read {warm.records:,} records, expected {records:,}")
        print(
            f"Warm-up (untimed): {warm.records:,} records in {warm.pages:,} pages of "
            f"`{SOQL}` ({PAGE_HEADERS['Sforce-Query-Options']}) in {warm.seconds:.1f} s; "
            f"{warm.cached_mb:,.0f} MB cached.\nThe sandbox serves the timed rounds from its "
            "page cache, so the figures measure the clients, not the server.",
            flush=True,
        )
        yield {**env, "SALESFORCE_SANDBOX_URL": url}


def measure(
    names: list[str], records: int, rounds: int, tmp: Path, env: dict[str, str], keep: bool
) -> dict[str, list[Run]]:
    """Rounds of A, B, C (alternating, so drift on the machine spreads over all of them).

    Every page of every timed run must come from the sandbox's page cache: a miss means a
    contender asked for something other than the warmed-up query, and timed the server too.
    """
    url = env["SALESFORCE_SANDBOX_URL"]
    runs: dict[str, list[Run]] = {name: [] for name in names}
    for number in range(1, rounds + 1):
        for name in names:
            before = sandbox.cache_stats(url)
            run = run_child(name, tmp / f"n{records}-round{number}" / name, env, keep)
            after = sandbox.cache_stats(url)
            problems = check(run, records)
            print(_round_line(number, run), flush=True)
            misses = after["page_cache_misses"] - before["page_cache_misses"]
            if misses:
                problems.append(
                    f"{name} round {number}: {misses} page(s) missed the sandbox's page cache, "
                    f"so the sandbox's serialisation was timed too; every contender must issue "
                    f"`{SOQL}` with {PAGE_HEADERS['Sforce-Query-Options']}"
                )
            if problems:
                raise BenchError("; ".join(problems))
            runs[name].append(run)
    return runs


def cache_line(env: dict[str, str]) -> str:
    stats = sandbox.cache_stats(env["SALESFORCE_SANDBOX_URL"])
    return (
        f"Sandbox page cache over the timed rounds: {stats['page_cache_hits']:,} hits, "
        f"{stats['page_cache_misses']:,} misses"
    )


def _round_line(number: int, run: Run) -> str:
    r = run.result
    return (
        f"  round {number}  {r.contender:<13} read {r.records_read:>11,}  loaded "
        f"{r.records_loaded:>11,}  {r.seconds:8.2f} s  {r.records_per_second:>10,.0f} rec/s  "
        f"peak {run.peak_rss_mb:7.1f} MB (child says {r.peak_rss_mb:.1f}, "
        f"{r.rss_before_mb:.1f} MB after imports)"
    )


@dataclass
class Summary:
    records: int
    loaded: int
    rate: float  # median records/s
    peak_mb: float  # median peak RSS
    before_mb: float  # median RSS after imports, before the run

    @classmethod
    def of(cls, runs: list[Run]) -> Summary:
        return cls(
            records=runs[0].result.records_read,
            loaded=runs[0].result.records_loaded,
            rate=statistics.median(r.result.records_per_second for r in runs),
            peak_mb=statistics.median(r.peak_rss_mb for r in runs),
            before_mb=statistics.median(r.result.rss_before_mb for r in runs),
        )


def table(summaries: dict[str, Summary]) -> str:
    head = (
        f"{'contender':<14}{'records':>12}{'loaded':>12}{'median rec/s':>15}"
        f"{'median peak RSS MB':>21}{'RSS after imports MB':>23}"
    )
    lines = [head, "-" * len(head)]
    for name, s in summaries.items():
        lines.append(
            f"{name:<14}{s.records:>12,}{s.loaded:>12,}{s.rate:>15,.0f}{s.peak_mb:>21.1f}"
            f"{s.before_mb:>23.1f}"
        )
    return "\n".join(lines)


def ratio(summaries: dict[str, Summary], other: str) -> float | None:
    if FLOWBRIDGE not in summaries or other not in summaries:
        return None
    return summaries[FLOWBRIDGE].rate / summaries[other].rate


def targets(summaries: dict[str, Summary], records: int) -> str:
    rest, arrow = ratio(summaries, DLT_REST), ratio(summaries, DLT_ARROW)
    lines = [
        f"flowbridge / dlt-rest-api: {_x(rest)}    flowbridge / dlt-arrow: {_x(arrow)}",
        "",
        "Targets (from the issue)",
        _target(
            f"flowbridge >= {REST_SPEEDUP:g}x dlt REST API source",
            _x(rest),
            None if rest is None else rest >= REST_SPEEDUP,
        ),
        _target(
            f"flowbridge >= {ARROW_SPEEDUP:g}x dlt fed Arrow tables",
            _x(arrow),
            None if arrow is None else arrow >= ARROW_SPEEDUP,
        ),
    ]
    peak = summaries[FLOWBRIDGE].peak_mb if FLOWBRIDGE in summaries else None
    judged = peak is not None and records >= MEMORY_AT_RECORDS
    lines.append(
        _target(
            f"flowbridge peak RSS < {MEMORY_LIMIT_MB:g} MB at {MEMORY_AT_RECORDS:,} records",
            "n/a" if peak is None else f"{peak:.1f} MB at {records:,}",
            peak < MEMORY_LIMIT_MB if judged and peak is not None else None,
        )
    )
    return "\n".join(lines)


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _target(label: str, value: str, met: bool | None) -> str:
    verdict = "not judged" if met is None else ("MET" if met else "MISSED")
    return f"  {label:<52} {value:>24}   {verdict}"


def phases(runs: list[Run]) -> str:
    """Median seconds of each phase of the flowbridge job (from the Dagster event log)."""
    keys = list(runs[0].result.phases)
    lines = ["flowbridge job phases, median seconds (Dagster event timestamps):"]
    for key in keys:
        values = [r.result.phases.get(key, 0.0) for r in runs]
        lines.append(f"  {key:<72} {statistics.median(values):8.3f}")
    return "\n".join(lines)


def compare(args: argparse.Namespace, tmp: Path, env: dict[str, str]) -> None:
    print(
        f"Benchmark: {args.records:,} Opportunities, {args.rounds} round(s) of "
        f"{', '.join(args.only)}; temporary folder {tmp}",
        flush=True,
    )
    with serving(args.records, tmp, env) as child_env:
        runs = measure(args.only, args.records, args.rounds, tmp, child_env, args.keep)
        print(cache_line(child_env), flush=True)
    problems = agree(runs)
    if problems:
        raise BenchError("; ".join(problems))
    summaries = {name: Summary.of(rs) for name, rs in runs.items()}
    print()
    print(table(summaries))
    print()
    print(targets(summaries, args.records))
    if FLOWBRIDGE in runs:
        print()
        print(phases(runs[FLOWBRIDGE]))
    if set(args.only) & {DLT_REST, DLT_ARROW}:
        print()
        print(
            "Notes: dlt has no quarantine: its contenders drop negative amounts (counted as "
            "filtered) where Flowbridge writes them to a rejected table with the reason."
        )
        print(
            "Peak RSS is each child's ru_maxrss (os.wait4); rec/s is records read / wall "
            "time of the run, interpreter start and imports excluded."
        )


def growth(args: argparse.Namespace, tmp: Path, env: dict[str, str]) -> None:
    """Flowbridge's peak RSS at N/4 and at N: a streaming pipeline's must not grow with N."""
    sizes = [args.records // 4, args.records]
    peaks: dict[int, Summary] = {}
    for size in sizes:
        print(f"Growth check: flowbridge at {size:,} records, {args.rounds} round(s)", flush=True)
        with serving(size, tmp, env) as child_env:
            runs = measure([FLOWBRIDGE], size, args.rounds, tmp, child_env, args.keep)
            print(cache_line(child_env), flush=True)
        peaks[size] = Summary.of(runs[FLOWBRIDGE])
    small, large = peaks[sizes[0]], peaks[sizes[1]]
    grew = large.peak_mb - small.peak_mb
    flat = large.peak_mb <= small.peak_mb * (1 + GROWTH_TOLERANCE)
    print()
    for size, s in peaks.items():
        print(
            f"  flowbridge at {size:>11,} records: median peak RSS {s.peak_mb:7.1f} MB "
            f"(after imports {s.before_mb:.1f} MB), {s.rate:,.0f} rec/s"
        )
    print(
        f"  4x the records: peak RSS {grew:+.1f} MB ({grew / small.peak_mb:+.1%}) -> "
        + ("flat (within 10%)" if flat else "GROWS with N")
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    tmp = Path(tempfile.mkdtemp(prefix="flowbridge-bench-"))
    try:
        env = base_env(tmp)
        if args.growth:
            growth(args, tmp, env)
        else:
            compare(args, tmp, env)
    except (BenchError, sandbox.SandboxError) as exc:
        print(f"\nbenchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"\nkept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
