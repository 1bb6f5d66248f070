"""One contender in its own process: `python -m bench.child <contender> <workdir>`.

Prints one BENCH-RESULT line (JSON) with its counts, time and its own peak RSS; exits 1 on error.
"""

from __future__ import annotations

import importlib
import resource
import sys
import traceback
from pathlib import Path

CONTENDERS = {
    "flowbridge": "bench.flowbridge_contender",
    "dlt-rest-api": "bench.dlt_rest",
    "dlt-arrow": "bench.dlt_arrow",
}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main(argv: list[str]) -> int:
    name, workdir = argv[0], Path(argv[1])
    try:
        module = importlib.import_module(CONTENDERS[name])
        before = peak_rss_mb()  # imports only: what the process costs before it moves a record
        result = module.run(workdir)
    except Exception:
        traceback.print_exc()
        return 1
    result.rss_before_mb = round(before, 1)
    result.peak_rss_mb = round(peak_rss_mb(), 1)
    print(result.line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
