"""Speed of synergy extraction with rank selection on the 15 musclesyneRgies SYNS people.

    KINESIS_NEURO_DATA=../shared/datasets python benchmarks/synergy_speed.py [--restarts 5] [--max-rank 10]

Times :class:`kinesis_neuro.synergies.SynergyModel` (scikit-learn coordinate-descent NMF) side by side
with a plain NumPy port of musclesyneRgies' multiplicative-update loop (same random start range, same
stopping rule: R2 gain over the last 20 iterations < 0.01 % of R2, at most 1000 iterations; same
ranks, restarts and R2-linearity rank rule). Prints both times, the speed-up (goal >= 3) and how well
each agrees with the ranks and R2 the R package shipped.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny matrices: BLAS threads only add overhead

import numpy as np  # noqa: E402

from kinesis_neuro.datasets import fetch  # noqa: E402
from kinesis_neuro.io.rdata import read_syns  # noqa: E402
from kinesis_neuro.synergies import SynergyModel, r2_linearity_rank, r2_score  # noqa: E402


def mu_nmf(V: np.ndarray, rank: int, rng: np.random.Generator, max_iter: int = 1000, last_iter: int = 20,
           r2_target: float = 0.01) -> tuple[np.ndarray, np.ndarray, float]:
    """Baseline: Lee-Seung multiplicative updates on V (muscles x samples) as musclesyneRgies runs them.

    Returns (M muscles x rank with unit-norm columns, P rank x samples, R2 of the last iteration).
    """
    m, n = V.shape
    P = rng.uniform(V.min(), V.max(), (rank, n))
    M = rng.uniform(V.min(), V.max(), (m, rank))
    r2 = []
    for _ in range(max_iter):
        P *= (M.T @ V) / ((M.T @ M) @ P)
        M *= (V @ P.T) / (M @ (P @ P.T))
        r2.append(r2_score(V, M @ P))
        norms = np.linalg.norm(M, axis=0)
        M /= norms
        P *= norms[:, None]
        if len(r2) > last_iter and r2[-1] - r2[-1 - last_iter] < r2[-1] * r2_target / 100:
            break
    return M, P, r2[-1]


def baseline_rank(V: np.ndarray, max_rank: int, restarts: int, rng: np.random.Generator) -> tuple[int, np.ndarray]:
    """Baseline rank selection: best-of-``restarts`` R2 for ranks 1..max_rank, then the R2-linearity rule."""
    V = V.T.copy()
    V[V <= 0] = V[V > 0].min()  # as the package does before NMF
    curve = np.array([max(mu_nmf(V, r, rng)[2] for _ in range(restarts)) for r in range(1, max_rank + 1)])
    return r2_linearity_rank(curve), curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--restarts", type=int, default=5)
    parser.add_argument("--max-rank", type=int, default=10)
    args = parser.parse_args()
    syns = read_syns(fetch("musclesynergies", "SYNS.RData"))
    people = [str(s) for s in syns["V"].subject.values]
    shipped_rank = syns["rank"].values.astype(int)
    shipped_r2 = syns["R2"].values

    started = time.perf_counter()
    models = [SynergyModel(max_rank=args.max_rank, restarts=args.restarts).fit(syns["V"].sel(subject=p))
              for p in people]
    ours = time.perf_counter() - started

    rng = np.random.default_rng(0)
    started = time.perf_counter()
    baseline = [baseline_rank(syns["V"].sel(subject=p).values, args.max_rank, args.restarts, rng) for p in people]
    numpy_time = time.perf_counter() - started

    def agreement(ranks, curves) -> str:
        hits = int(np.sum(np.array(ranks) == shipped_rank))
        d_r2 = max(abs(curve[r - 1] - r2) for curve, r, r2 in zip(curves, shipped_rank, shipped_r2, strict=True))
        return f"rank = shipped in {hits}/{len(people)}, max |R2 - shipped R2| {d_r2:.4f}"

    print(f"{len(people)} people, ranks 1-{args.max_rank}, {args.restarts} restarts each")
    ours_agree = agreement([m.rank_ for m in models], [m.r2_curve_ for m in models])
    print(f"SynergyModel (sklearn NMF, cd):  {ours:7.2f} s   {ours_agree}")
    print(f"NumPy multiplicative updates:    {numpy_time:7.2f} s   {agreement(*zip(*baseline, strict=True))}")
    print(f"speed-up:                        {numpy_time / ours:7.2f} x  (goal >= 3)")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
