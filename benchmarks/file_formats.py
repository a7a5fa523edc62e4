"""How long a big dataset file takes to write and read back, in each format LoRA Desk saves.

``--rows`` rows (100,000 by default) of the shape ``("Question i, with a comma?", "Answer i\\nsecond line")``
(a comma and a line break in every row, so CSV quoting and JSON escapes are exercised) are written with
``core.formats.write_dataset`` and read back with ``core.formats.read_dataset``, once per format, best of
``--repeats``. Target: write + read of 100,000 rows in at most 10 s per format (scaled to ``--rows``). The
round trip must give back exactly the rows written (that figure does not depend on the machine; the script
exits 1 when it fails).

    python benchmarks/file_formats.py               # 100,000 rows
    python benchmarks/file_formats.py --rows 500000
    python benchmarks/file_formats.py --markdown    # also print the summary as a Markdown table
    python benchmarks/file_formats.py --quick       # 2,000 rows, one repeat (a smoke run)
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _common as C  # noqa: F401  (puts the source checkout on sys.path)

from loradesk.core.dataset import Example
from loradesk.core.formats import read_dataset, write_dataset

SUFFIXES = (".jsonl", ".json", ".csv")
TARGET_S = 10.0  # write + read of 100,000 rows, per format


def make_rows(n: int) -> list[Example]:
    return [Example(f"Question {i}, with a comma?", f"Answer {i}\nsecond line") for i in range(n)]


def best_of(repeats: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """The shortest of ``repeats`` timed calls of ``fn`` (seconds), and what the last call returned."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, help="rows per file (default 100,000; --quick: 2,000)")
    parser.add_argument("--repeats", type=int, help="timed repeats, the best counts (default 3; --quick: 1)")
    parser.add_argument("--quick", action="store_true", help="2,000 rows, one repeat")
    parser.add_argument("--markdown", action="store_true", help="also print the summary as a Markdown table")
    args = parser.parse_args()
    n = args.rows or (2_000 if args.quick else 100_000)
    repeats = args.repeats or (1 if args.quick else 3)
    target = TARGET_S * n / 100_000  # the target scales with the size
    rows = make_rows(n)
    print(f"{n:,} rows, best of {repeats}; {os.cpu_count()} CPU cores ({platform.machine()}), "
          f"load average {os.getloadavg()[0]:.2f}; Python {platform.python_version()}")

    table: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="loradesk-formats-") as work:
        for suffix in SUFFIXES:
            path = Path(work) / f"rows{suffix}"
            write_s, _ = best_of(repeats, lambda p=path: write_dataset(p, rows))
            read_s, back = best_of(repeats, lambda p=path: read_dataset(p))
            same = back == rows
            total = write_s + read_s
            print(f"{suffix:<6} {path.stat().st_size / 1e6:6.1f} MB  write {write_s:5.2f} s  read {read_s:5.2f} s  "
                  f"({n / read_s:,.0f} rows/s read); round trip {'exact' if same else 'CHANGED the rows'}")
            table += [(f"Write + read {n:,} rows ({suffix})", f"{total:.2f} s", f"<= {target:.1f} s",
                       "yes" if total <= target else "NO"),
                      (f"Round trip gives the same rows ({suffix})", "yes" if same else "no", "yes",
                       "yes" if same else "NO")]

    head = ("Figure", "Measured", "Target", "Met")
    widths = [max(len(r[i]) for r in [head, *table]) for i in range(len(head))]
    print("\nSummary")
    for row in [head, *table]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    if args.markdown:
        print("\n| " + " | ".join(head) + " |\n|" + " --- |" * len(head))
        print("\n".join("| " + " | ".join(row) + " |" for row in table))
    return 0 if all(row[3] == "yes" for row in table if row[0].startswith("Round trip")) else 1


if __name__ == "__main__":
    raise SystemExit(main())
