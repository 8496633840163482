"""Exact top-k cosine search: medgen's chunked streaming search vs faiss IndexFlatIP, else a naive full matrix.

Random unit vectors (seeded), queries × database × d (default 10,000 × 100,000 × 512, k = 5). ``medgen`` is
:func:`medgen.memorization.search.topk_cosine` (database chunks × query blocks, running top-k merge); the
baseline is faiss' exact ``IndexFlatIP`` when faiss is importable, else ``torch.topk(queries @ database.T)`` on
the full similarity matrix (4 GB at the default size; it runs on the first ``--naive-rows`` database rows, with
medgen timed again on the same rows, when memory is short). Prints both times, their ratio (target ≤ 1.0×
faiss), whether the indices agree, and each method's extra peak memory (RSS high-water mark, reset before
each method, above the RSS with the inputs loaded; target ≤ 1 GiB for medgen). Linux only (/proc).

Times on a shared 2-core VM vary by ±10 % from run to run, so each method runs ``--repeats`` times,
alternating, and the medians are compared.

    python benchmarks/memorization_search.py [--queries 10000] [--database 100000] [--dim 512] [--threads N]
        [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from medgen.memorization.search import faiss_available, topk_cosine

GIB = 1024**3


def _status(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> None:
    """Reset the RSS high-water mark (Linux: writing 5 to /proc/self/clear_refs)."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def _available() -> int:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def _timed(label: str, fn):  # type: ignore[no-untyped-def]
    _reset_peak()
    before = _status("VmRSS")
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    extra = max(0, _status("VmHWM") - before)
    print(f"{label:>34}: {seconds:8.2f} s, extra peak memory {extra / GIB:.2f} GiB", flush=True)
    return result, seconds, extra


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--database", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=3, help="runs of each method (alternating); medians")
    parser.add_argument("--naive-rows", type=int, default=None, help="database rows for the naive search")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    queries = F.normalize(torch.randn(args.queries, args.dim, generator=gen), dim=1)
    database = F.normalize(torch.randn(args.database, args.dim, generator=gen), dim=1)
    print(f"{args.queries} x {args.database} x {args.dim}, k={args.k}, {args.threads} threads")
    if faiss_available():
        times: dict[str, list[float]] = {"medgen": [], "faiss": []}
        extras = []
        for _ in range(args.repeats):
            ours, seconds, extra = _timed("medgen chunked (torch)", lambda: topk_cosine(queries, database, args.k))
            times["medgen"].append(seconds)
            extras.append(extra)
            theirs, seconds, _ = _timed(
                "faiss IndexFlatIP", lambda: topk_cosine(queries, database, args.k, backend="faiss")
            )
            times["faiss"].append(seconds)
        t_ours, t_theirs = statistics.median(times["medgen"]), statistics.median(times["faiss"])
        extra = max(extras)
        same = float((theirs.index == ours.index).float().mean())
        print(f"median of {args.repeats}: medgen {t_ours:.2f} s, faiss {t_theirs:.2f} s")
        print(f"medgen / faiss time: {t_ours / t_theirs:.2f}x (target <= 1.0); same indices: {same:.4f}")
    else:
        need = 4 * args.queries * args.database * 2
        rows = args.naive_rows or (args.database if need < 0.6 * _available() else args.database // 5)
        ours, t_ours, extra = _timed("medgen chunked (torch)", lambda: topk_cosine(queries, database, args.k))
        print(f"faiss is not installed: baseline = naive full-matrix topk on {rows} database rows")
        sub = database[:rows]
        naive, t_naive, _ = _timed("naive full matrix", lambda: (queries @ sub.T).topk(args.k, dim=1))
        if rows != args.database:
            ours, t_ours, _ = _timed(f"medgen chunked on {rows} rows", lambda: topk_cosine(queries, sub, args.k))
        same = float((naive.indices == ours.index).float().mean())
        print(f"medgen / naive time: {t_ours / t_naive:.2f}x; same indices: {same:.4f}")
    print(f"medgen extra peak memory: {extra / GIB:.2f} GiB (target <= 1.0)")


if __name__ == "__main__":
    main()
