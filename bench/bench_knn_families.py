"""The KNN probe on families of states a network can produce, against scikit-learn and faiss, side by side.

    python bench/bench_knn_families.py [--quick] [--families a,b] [--sizes 1000x150x32,...] [--repeat 2]
    python bench/bench_knn_families.py --cold      # what a fresh process pays: first call, empty vs filled cache

Per family and size (N states, T time slices, H units; two classes), the
per-time-slice 3-NN resubstitution accuracy, timed three ways in one process,
interleaved, best of --repeat, one thread (as a run): scikit-learn's
``KNeighborsClassifier(3).fit(h_t, y).predict(h_t)`` per slice on the float32
states; faiss-cpu's exact ``IndexFlatL2`` search (k=3) per slice with a
majority vote (``pip install -e .[bench]``; it orders equal distances its own
way, no tie rule); and the project's ``knn_curve`` with its defaults, as a run
calls it (the compiled search, compiled or loaded before timing). Families:

- gaussian: independent normal states (no structure, no ties);
- tanh walk: saturated tanh of a random walk (coordinates pinned at +-1);
- low rank: tanh of a 3-dimensional random walk mapped to H units;
- clustered: 8 tight clusters (spread 0.01) per slice;
- quantised: a tanh walk rounded to steps of 0.25 (equal distances between distinct states);
- fixed points: a third of the samples reach one of three shared states (exact ties);
- near ties: 6 clusters of states a few float32 units apart (distances below float32's Gram rounding);
- lstm: a seeded LSTM's states on zero-padded noisy sines (the project's own kind, bench_knn.py).

Columns: tie share; open = the share of rows the float32 products left open
(searched again, in float64 and by exact differences); seconds per map; the
ratios; products: the share of our time the float32 products of the upper
triangles alone take (BLAS, timed apart); the check: our curve against the exact brute force of the tie rule
(explicit float64 distances, exact fractions) on the 2 most-tied slices, and
where no slice has ties, the number of slices on which scikit-learn agrees.
Where a family stays under 2x scikit-learn, the last column says what bounds it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_knn import fixed_point_states, lstm_states, sklearn_map
from machine import describe, load

from pipeline.probes.knn import knn_curve

REPO = Path(__file__).resolve().parent.parent
SIZES = [(1000, 150, 32), (2500, 40, 50), (4000, 150, 64)]
RUN_EPOCHS = 50  # a run's calls: the probe takes the compiled search from its first map


def two_classes(rng, n):
    return rng.integers(0, 2, n)


def gaussian(n, t, h, rng):
    y = two_classes(rng, n)
    x = rng.normal(size=(n, t, h))
    x[:, :, 0] += 0.5 * y[:, None]
    return x, y


def tanh_walk(n, t, h, rng):
    y = two_classes(rng, n)
    drift = rng.normal(size=(2, h)) * 0.3
    return np.tanh(3.0 * np.cumsum(rng.normal(size=(n, t, h)) + drift[y][:, None, :], 1)), y


def low_rank(n, t, h, rng, rank=3):
    y = two_classes(rng, n)
    walk = np.cumsum(rng.normal(size=(n, t, rank)) * 0.3, 1) + 0.5 * y[:, None, None]
    return np.tanh(walk @ rng.normal(size=(rank, h))), y


def clustered(n, t, h, rng, clusters=8, spread=0.01):
    y = two_classes(rng, n)
    centre = np.tanh(rng.normal(size=(clusters, t, h)))
    which = (rng.integers(0, clusters // 2, n) * 2 + y) % clusters
    return centre[which] + spread * rng.normal(size=(n, t, h)), y


def quantised(n, t, h, rng, step=0.25):
    y = two_classes(rng, n)
    walk = np.cumsum(rng.normal(size=(n, t, h)) * 0.3 + 0.1 * y[:, None, None], 1)
    return np.round(np.tanh(walk) / step) * step, y


def near_ties(n, t, h, rng, clusters=6, units=4):
    y = two_classes(rng, n)
    centre = np.tanh(rng.normal(size=(clusters, t, h))).astype(np.float32)
    x = centre[rng.integers(0, clusters, n)]
    return x + rng.integers(-units, units + 1, size=x.shape) * np.spacing(np.abs(x)), y


def fixed_points(n, t, h, rng):
    states, labels = fixed_point_states(n, t, h, ties=True, seed=int(rng.integers(1 << 30)))
    return states.numpy(), labels.numpy()


def lstm(n, t, h, rng):
    states, labels = lstm_states("gesture", n, t, h, seed=int(rng.integers(1 << 30)))
    return states.numpy(), labels.numpy()


FAMILIES = {
    "gaussian": gaussian,
    "tanh walk": tanh_walk,
    "low rank": low_rank,
    "clustered": clustered,
    "quantised": quantised,
    "fixed points": fixed_points,
    "near ties": near_ties,
    "lstm": lstm,
}


def states_of(family: str, n: int, t: int, h: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    x, y = FAMILIES[family](n, t, h, np.random.default_rng(seed))
    return np.ascontiguousarray(x, dtype=np.float32), y


def faiss_map(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    import faiss

    out = []
    for t in range(x.shape[1]):
        h_t = np.ascontiguousarray(x[:, t])
        index = faiss.IndexFlatL2(h_t.shape[1])
        index.add(h_t)
        _, nearest = index.search(h_t, 3)
        out.append(np.mean((y[nearest].sum(1) >= 2) == y))
    return np.array(out)


def check(x: np.ndarray, y: np.ndarray, ours, sklearn_curve: np.ndarray) -> str:
    sys.path.insert(0, str(REPO))
    from tests.knn_reference import hypergeometric_curve

    slices = np.sort(np.argsort(-ours.tie_share, kind="stable")[:2])
    accuracy, share = hypergeometric_curve(x[:, slices].astype(np.float64), y.astype(object))
    exact = np.abs(ours.accuracy[slices] - accuracy).max()
    text = f"|ours - exact| {exact:.0e}, tie share {'=' if np.array_equal(share, ours.tie_share[slices]) else '!='}"
    if ours.tie_share.max() == 0:
        text += f"; skl equal on {int((sklearn_curve == ours.accuracy).sum())}/{len(sklearn_curve)}"
    return text


def products_seconds(x: np.ndarray, block: int = 64) -> float:
    """The float32 products of every slice's upper triangle alone, as our search computes them (a block of 64
    rows against every state from the block's first on, one BLAS product per block, one thread): the part of
    our search no bookkeeping can remove."""
    tic = time.perf_counter()
    for t in range(x.shape[1]):
        h_t = np.ascontiguousarray(x[:, t])
        rows_t = np.ascontiguousarray(h_t.T)
        for lo in range(0, len(h_t), block):
            np.dot(h_t[lo:], np.ascontiguousarray(rows_t[:, lo : lo + block]))
    return time.perf_counter() - tic


def bound(speedup: float, open_share: float, products_share: float) -> str:
    if speedup >= 2:
        return ""
    if open_share > 0.02:
        return f"bound: {open_share:.0%} of rows left open by float32 rounding, searched again"
    if products_share > 0.5:
        return f"bound: the products (N^2 H / 2: {products_share:.0%} of our time)"
    return f"bound: the lists and bookkeeping (O(N^2) per slice; the products are {products_share:.0%} of our time)"


def measure(family: str, n: int, t: int, h: int, repeat: int, with_faiss: bool) -> None:
    from pipeline.probes import knn_compiled  # imported by the first compiled search; here for its counts

    x, y = states_of(family, n, t, h)
    states, labels = torch.from_numpy(x), torch.from_numpy(y)
    runs = {
        "skl": lambda: sklearn_map(x, y),
        "ours": lambda: knn_curve(states, labels, expected_calls=RUN_EPOCHS),
    }
    if with_faiss:
        runs["faiss"] = lambda: faiss_map(x, y)
    best, out = {name: float("inf") for name in runs}, {}
    with threadpool_limits(1):
        for _ in range(repeat):
            for name, run in runs.items():
                if name == "ours":
                    before = dict(knn_compiled.SEARCH_COUNTS)
                tic = time.perf_counter()
                out[name] = run()
                best[name] = min(best[name], time.perf_counter() - tic)
                if name == "ours":
                    counts = {key: knn_compiled.SEARCH_COUNTS[key] - before[key] for key in before}
        products = min(products_seconds(x) for _ in range(repeat))
    ours = out["ours"]
    open_share = counts["open"] / max(1, counts["rows"])
    speedup = best["skl"] / best["ours"]
    faiss_text = (
        f"{best['faiss']:>8.3f}  {best['faiss'] / best['ours']:>7.2f}x" if with_faiss else f"{'n/a':>8}  {'':>8}"
    )
    print(
        f"{family:<13} {n:>5} {t:>4} {h:>3} {ours.tie_share.mean():>5.2f} {open_share:>5.3f} "
        f"{products / best['ours']:>5.0%}  {best['skl']:>8.3f}  "
        f"{faiss_text}  {best['ours']:>8.3f}  {speedup:>7.2f}x  {check(x, y, ours, out['skl'])}  "
        f"{bound(speedup, open_share, products / best['ours'])}",
        flush=True,
    )


# A fresh process as a user meets it: import, then one call of the library API with its defaults.
COLD = """
import json, sys, time
tic = time.perf_counter()
import numpy as np, torch
from threadpoolctl import threadpool_limits
sys.path.insert(0, "bench")
from bench_knn_families import states_of
from bench_knn import sklearn_map
from pipeline.probes import knn
torch.set_num_threads(1)
family, n, t, h = sys.argv[1], *map(int, sys.argv[2:5])
x, y = states_of(family, n, t, h)
imported = time.perf_counter() - tic
with threadpool_limits(1):
    compiled = knn.use_compiled_search(torch.device("cpu"), n, t, h)
    one_off = knn.one_off_seconds()
    tic = time.perf_counter(); knn.knn_curve(torch.from_numpy(x), torch.from_numpy(y)); first = time.perf_counter() - tic
    tic = time.perf_counter(); knn.knn_curve(torch.from_numpy(x), torch.from_numpy(y)); second = time.perf_counter() - tic
    tic = time.perf_counter(); sklearn_map(x, y); skl = time.perf_counter() - tic
print(json.dumps(dict(imported=imported, compiled=compiled, one_off=one_off, first=first, second=second, skl=skl)))
"""


# A process that compiles the kernels into the cache (as a long run's first map does).
FILL = """
import sys, torch
sys.path.insert(0, "bench")
from bench_knn_families import states_of
from pipeline.probes import knn
x, y = states_of("lstm", 1000, 3, 8)
knn.knn_curve(torch.from_numpy(x), torch.from_numpy(y), expected_calls=10**6)
"""


def cold(sizes: list[tuple[int, int, int]]) -> None:
    """The first call of knn_curve in a fresh process: with an empty compile cache (the machine's first
    process), with the cache filled by an earlier process that compiled the kernels, and with the cache off."""
    print("cold process: first knn_curve call with the API's defaults, then a second, then scikit-learn")
    with tempfile.TemporaryDirectory() as scratch:
        for n, t, h in sizes:
            folder = Path(scratch) / f"cache-{n}-{t}-{h}"
            for state in ("empty cache", "filled cache", "cache off"):
                env = {**os.environ, "LCM_COMPILE_CACHE": "off" if state == "cache off" else str(folder)}
                if state == "filled cache":  # a long run on this machine compiled the kernels before
                    subprocess.run([sys.executable, "-c", FILL], cwd=REPO, env=env, check=True, capture_output=True)
                out = subprocess.run(
                    [sys.executable, "-c", COLD, "lstm", str(n), str(t), str(h)],
                    cwd=REPO,
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                r = json.loads(out.stdout.strip().splitlines()[-1])
                search = "compiled" if r["compiled"] else "torch"
                print(
                    f"  lstm N {n} T {t} H {h}, {state:<12}: predicted one-off {r['one_off']:.0f} s -> {search} search; "
                    f"first call {r['first']:.2f} s, second {r['second']:.2f} s, scikit-learn {r['skl']:.2f} s "
                    f"(first call {r['skl'] / r['first']:.2f}x, second {r['skl'] / r['second']:.2f}x); "
                    f"imports {r['imported']:.1f} s; {load()}",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one small size: checks that the script runs")
    parser.add_argument("--families", default=None, help="comma-separated family names (default: all)")
    parser.add_argument("--sizes", default=None, help="NxTxH,... (default: 1000x150x32,2500x40x50,4000x150x64)")
    parser.add_argument("--repeat", type=int, default=2, help="interleaved timings of each; the best is printed")
    parser.add_argument("--no-faiss", action="store_true", help="leave faiss-cpu out")
    parser.add_argument("--cold", action="store_true", help="what a fresh process pays, instead of the families")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")] if args.sizes else SIZES
    if args.quick:
        sizes = [(1000, 20, 32)]
    print(describe(1))
    if args.cold:
        cold(sizes[1:] if not args.sizes and not args.quick else sizes)
        return
    with_faiss = not args.no_faiss
    try:
        import faiss

        faiss.omp_set_num_threads(1)
    except ImportError:
        print("faiss-cpu is not installed (pip install -e '.[bench]'): its column is left out")
        with_faiss = False
    families = args.families.split(",") if args.families else list(FAMILIES)
    warm_x, warm_y = states_of("lstm", 1000, 2, 8)
    knn_curve(torch.from_numpy(warm_x), torch.from_numpy(warm_y), expected_calls=10**6)  # compiles or loads
    print(
        f"{'family':<13} {'N':>5} {'T':>4} {'H':>3} {'ties':>5} {'open':>5} {'prod':>5}  {'skl s':>8}  {'faiss s':>8}  "
        f"{'vs faiss':>8}  {'ours s':>8}  {'vs skl':>8}  check"
    )
    for n, t, h in sizes:
        for family in families:
            measure(family, n, t, h, args.repeat, with_faiss)
    print(
        "ties: mean tie share; open: rows left open by the float32 products; prod: the upper triangles' products "
        f"alone (BLAS) as a share of our time; {load()}"
    )


if __name__ == "__main__":
    main()
