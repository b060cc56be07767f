#!/usr/bin/env python
"""Benchmark, not a test: kNN backends side by side in one run, on the same vectors and queries.

  exact    the solver's exact numpy search (solver.level2.knn.NeighbourIndex, exact=True): the reference for recall
  nmslib   HNSW through the solver's own NeighbourIndex (exact=False), i.e. what `make knn` runs; one row for this
           interpreter's nmslib and one per --nmslib-python LABEL=PATH (e.g. an nmslib built from source), each run
           in a subprocess of that interpreter on the same vectors (saved to a temporary .npy)
  hnswlib  HNSW with the same M / efConstruction / efSearch (pip install hnswlib; skipped when it is missing)

The vectors are seeded clustered Gaussian blobs shaped like image embeddings: cluster centres plus a shared
low-rank within-cluster variation plus isotropic noise; the queries come from the same blobs but are not in the
index. Every library uses all cores (its default). Prints a markdown table, the ratios against exact search and
the number of queries from which an HNSW index pays for its build.

  python benchmarks/knn_backends.py [--n 100000] [--dim 512] [--queries 2000] [--k 10]
      [--nmslib-python source=/path/to/venv/bin/python ...]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this repository's solver, installed or not

import numpy as np  # noqa: E402

from solver.config.experiment import KnnSpec  # noqa: E402
from solver.level2.knn import NeighbourIndex  # noqa: E402

SIMD_WARNING = "not compiled to use"  # what the SIMD-less nmslib wheel prints on import


def make_vectors(n: int, queries: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(index vectors (n, dim), query vectors (queries, dim)) float32 from the same clustered distribution."""
    rng = np.random.default_rng(seed)
    clusters, rank = 100, min(32, dim)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    basis = (rng.normal(size=(rank, dim)) / np.sqrt(rank)).astype(np.float32)  # shared directions of within-class variation
    total = n + queries
    out = np.empty((total, dim), np.float32)
    for start in range(0, total, 20_000):  # chunks keep the temporaries small at 100k x 512
        m = min(20_000, total - start)
        label = rng.integers(clusters, size=m)
        latent = rng.normal(size=(m, rank)).astype(np.float32)
        noise = rng.normal(scale=0.5, size=(m, dim)).astype(np.float32)
        out[start : start + m] = centres[label] + latent @ basis * 2.0 + noise
    return out[:n], out[n:]


class Clock:
    """Wall and CPU seconds per step. CPU time adds up every thread of this process: on a shared, loaded machine it
    tracks the work done far better than wall time, which also counts the time spent waiting for other jobs."""

    def __init__(self):
        self.times: dict[str, float] = {}
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def lap(self, step: str) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        self.times[f"{step}_s"], self.times[f"{step}_cpu_s"] = wall - self.wall, cpu - self.cpu
        self.wall, self.cpu = wall, cpu


def timed_index(vectors: np.ndarray, queries: np.ndarray, settings: KnnSpec, exact: bool) -> tuple[dict, np.ndarray]:
    clock = Clock()
    index = NeighbourIndex(vectors, settings, exact=exact)
    clock.lap("build")
    ids, _ = index.query(queries, settings.k)
    clock.lap("query")
    return clock.times, ids


def run_hnswlib(vectors: np.ndarray, queries: np.ndarray, settings: KnnSpec) -> tuple[dict, np.ndarray]:
    import hnswlib

    clock = Clock()
    index = hnswlib.Index(space="cosine" if settings.space == "cosinesimil" else "l2", dim=vectors.shape[1])
    index.init_index(max_elements=len(vectors), ef_construction=settings.ef_construction, M=settings.M, random_seed=0)
    index.add_items(vectors, np.arange(len(vectors)))
    clock.lap("build")
    index.set_ef(max(settings.ef_search, settings.k))
    ids, _ = index.knn_query(queries, k=settings.k)
    clock.lap("query")
    return clock.times, ids.astype(np.int64)


def nmslib_has_simd(python: str) -> str:
    """'yes' / 'no' from the warning the SIMD-less wheel prints on import; '?' when nmslib does not import."""
    proc = subprocess.run([python, "-c", "import nmslib"], capture_output=True, text=True)
    if proc.returncode != 0:
        return "?"
    return "no" if SIMD_WARNING in proc.stdout + proc.stderr else "yes"


def run_nmslib(python: str, data: Path, query_file: Path, settings: KnnSpec, workdir: Path, label: str) -> tuple[dict, np.ndarray]:
    """Times NeighbourIndex(exact=False) in a subprocess of `python`, which needs numpy, tqdm and nmslib."""
    out = workdir / f"ids_{label}.npy"
    cmd = [python, str(Path(__file__).resolve()), "--worker", str(data), str(query_file), str(out), "--k", str(settings.k)]
    cmd += ["--M", str(settings.M), "--ef-construction", str(settings.ef_construction), "--ef-search", str(settings.ef_search)]
    cmd += ["--space", settings.space]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"error: nmslib run with {python} failed (exit {proc.returncode}):\n{proc.stderr.strip()}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), np.load(out)


def worker(args: argparse.Namespace) -> None:
    import nmslib  # noqa: F401  (loaded before the clock starts: NeighbourIndex imports it on first use)

    vectors, queries = np.load(args.worker[0]), np.load(args.worker[1])
    times, ids = timed_index(vectors, queries, settings_from(args), exact=False)
    np.save(args.worker[2], ids)
    print(json.dumps(times))


def settings_from(args: argparse.Namespace) -> KnnSpec:
    return KnnSpec(k=args.k, space=args.space, M=args.M, ef_construction=args.ef_construction, ef_search=args.ef_search)


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    return sum(len(np.intersect1d(a, b)) for a, b in zip(found, exact)) / exact.size


def main() -> None:
    defaults = KnnSpec()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="indexed vectors")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=2000, help="query vectors (not in the index)")
    parser.add_argument("--k", type=int, default=defaults.k)
    parser.add_argument("--space", default=defaults.space, choices=["cosinesimil", "l2"])
    parser.add_argument("--M", type=int, default=defaults.M)
    parser.add_argument("--ef-construction", type=int, default=defaults.ef_construction)
    parser.add_argument("--ef-search", type=int, default=defaults.ef_search)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nmslib-python", action="append", default=[], metavar="LABEL=PATH", help="another interpreter with nmslib (repeatable)")
    parser.add_argument("--worker", nargs=3, metavar=("VECTORS", "QUERIES", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    settings = settings_from(args)
    pythons = [("this python", sys.executable)]
    for item in args.nmslib_python:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            raise SystemExit(f"error: --nmslib-python {item!r} must be LABEL=PATH, e.g. source=/tmp/venv-nmslib-src/bin/python")
        pythons.append((label, path))

    vectors, queries = make_vectors(args.n, args.queries, args.dim, args.seed)
    print(
        f"{args.n} x {args.dim} float32 vectors, {args.queries} queries, k={args.k}, space={args.space}, "
        f"M={args.M}, efConstruction={args.ef_construction}, efSearch={args.ef_search}; {os.cpu_count()} CPUs",
        flush=True,
    )
    rows = []  # (name, SIMD, times, ids)
    times, exact_ids = timed_index(vectors, queries, settings, exact=True)
    rows.append(("exact (solver, numpy)", "BLAS", times, exact_ids))
    print(f"exact: build {times['build_s']:.2f} s, query {times['query_s']:.2f} s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        data, query_file = Path(tmp) / "vectors.npy", Path(tmp) / "queries.npy"
        np.save(data, vectors)
        np.save(query_file, queries)
        for i, (label, python) in enumerate(pythons):
            times, ids = run_nmslib(python, data, query_file, settings, Path(tmp), str(i))
            rows.append((f"nmslib HNSW via solver ({label})", nmslib_has_simd(python), times, ids))
            print(f"nmslib ({label}, {python}): build {times['build_s']:.2f} s, query {times['query_s']:.2f} s", flush=True)
    try:
        import hnswlib  # noqa: F401
    except ImportError:
        print("hnswlib not installed (pip install hnswlib): skipped", flush=True)
    else:
        times, ids = run_hnswlib(vectors, queries, settings)
        rows.append(("hnswlib HNSW", "compiled at install", times, ids))
        print(f"hnswlib: build {times['build_s']:.2f} s, query {times['query_s']:.2f} s", flush=True)

    exact = rows[0][2]
    exact_total = exact["build_s"] + exact["query_s"]
    print()
    print(
        f"| backend | SIMD | build s | query s | queries/s | recall@{args.k} | query time vs exact | build+query vs exact | "
        "build CPU s | query CPU s |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, simd, t, ids in rows:
        qps = args.queries / t["query_s"] if t["query_s"] > 0 else float("inf")
        ratio_q = t["query_s"] / exact["query_s"] if exact["query_s"] > 0 else float("nan")
        ratio_t = (t["build_s"] + t["query_s"]) / exact_total
        print(
            f"| {name} | {simd} | {t['build_s']:.2f} | {t['query_s']:.3f} | {qps:,.0f} | {recall(ids, exact_ids):.4f} | "
            f"{ratio_q:.3f}x | {ratio_t:.2f}x | {t['build_cpu_s']:.1f} | {t['query_cpu_s']:.2f} |"
        )
    print()
    exact_per_query = exact["query_s"] / args.queries
    for name, _, t, _ in rows[1:]:
        saved = exact_per_query - t["query_s"] / args.queries
        if saved > 0:
            print(f"{name}: pays for its build after {t['build_s'] / saved:,.0f} queries against {args.n} vectors")
        else:
            print(f"{name}: queries no faster than exact search here; never pays for its build")


if __name__ == "__main__":
    main()
