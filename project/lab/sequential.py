"""A claim's verdict from its per-seed differences, valid at whichever look it stops, and the page's
verdicts together with a false discovery rate of at most alpha.

**Two hypotheses a claim, never both true** (the partitioning principle, Finner & Strassburger 2002).
With d the per-seed differences (experiment minus comparison) and the margin m:

- a claim of a direction (``expect: lower`` or ``higher``), theta the difference in that direction:
  "no gain" (theta <= 0), rejected: *effect*, as predicted; "a gain of the margin" (theta >= m),
  rejected: *no effect* of that kind beyond the margin. One-sided paired t-tests.
- a claim of no difference (``expect: same``): "apart" (|mean| >= m), rejected: *no effect* beyond
  the margin (two one-sided tests, each at half the level); "equal" (mean = 0), rejected: *effect*
  (two-sided). Both read the same interval.

A claim's verdict is false only where its one true hypothesis was rejected, so each hypothesis
takes the claim's whole level: no correction inside a claim.

**Looks**: after each round of seeds the claim is tested again, a look with n of the plan's N seeds
weighted w = (n / N)^2, so the early looks, on few seeds, spend little of the level and the last
one most (the shape of Kim & DeMets' power family, rho = 2, on the p-value scale). At a look with
nominal p-value p the sequential p-value is P = F(p / w): the chance under the hypothesis that some
look of the plan gives p_k / w_k <= p / w, for normal differences. Paired t-statistics do not
depend on the unknown spread, so F is simulated once per plan (Monte Carlo, fixed seed) and is
exact up to simulation error (three standard errors are added); it never goes below p / w nor
above Bonferroni's sum of w_k times p / w. P is valid whatever look a claim stops at.

**The page**: a claim stops adding seeds once P <= alpha / claims (decided whatever the others
show); at the end, Benjamini-Hochberg (1995) over the claims' P at alpha decides every claim with P
<= alpha R / claims, R the number it decides. The expected share of false verdicts among the
page's verdicts (the false discovery rate) is then at most alpha for independent or positively
dependent claims; ``tests/lab/test_sequential.py`` checks it by simulation on the lab's own
per-seed differences. Intervals are shown at that same level (Benjamini & Yekutieli 2005).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from project.lab.stats import mean_sd

EFFECT, NO_EFFECT, UNDECIDED = "effect", "no effect", "undecided"
DIRECTIONS = {"lower": -1, "higher": 1}
POWER = 0.8  # the power at which an undecided claim's detectable difference is stated
SIMULATED = 200_000  # Monte Carlo paths of the null distribution of a plan's smallest p-value
_SIGMA = 3  # the Monte Carlo's standard errors added to F: the error stays on the safe side


@functools.lru_cache(maxsize=4096)
def _t(q: float, df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(q, df))


def weight(n: int, looks: tuple[int, ...]) -> float:
    """A look's share of the level: (its seeds / the plan's last look's)^2."""
    return min(1.0, n / looks[-1]) ** 2


@functools.lru_cache(maxsize=64)
def _smallest_p(looks: tuple[int, ...], two_sided: bool) -> np.ndarray:
    """The sorted null draws of the smallest weighted nominal p-value, p_k / w_k, over the plan's looks."""
    from scipy.stats import t

    rng = np.random.default_rng(20261207)
    out = []
    for start in range(0, SIMULATED, 50_000):
        z = rng.standard_normal((min(50_000, SIMULATED - start), looks[-1]))
        total, squares = np.cumsum(z, axis=1), np.cumsum(z * z, axis=1)
        smallest = np.ones(len(z))
        for n in looks:
            mean = total[:, n - 1] / n
            sd = np.sqrt(np.maximum(squares[:, n - 1] - n * mean * mean, 0.0) / (n - 1))
            stat = mean / (sd / math.sqrt(n))
            p = 2 * t.sf(np.abs(stat), n - 1) if two_sided else t.sf(stat, n - 1)
            smallest = np.minimum(smallest, p / weight(n, looks))
        out.append(smallest)
    return np.sort(np.concatenate(out))


def null_cdf(s: float, looks: tuple[int, ...], two_sided: bool = False) -> float:
    """F(s): the chance under the hypothesis that some look k of the plan gives p_k / w_k <= s."""
    if s <= 0 or math.isnan(s):
        return 0.0 if s <= 0 else math.nan
    bonferroni = sum(weight(n, looks) for n in looks) * s
    if len(looks) == 1:
        return min(1.0, s)
    draws = _smallest_p(looks, two_sided)
    share = np.searchsorted(draws, s, side="right") / len(draws)
    share += _SIGMA * math.sqrt(max(share * (1 - share), 1 / len(draws)) / len(draws))
    return float(min(1.0, bonferroni, max(s, share)))


def nominal(level: float, looks: tuple[int, ...], two_sided: bool = False, n: int | None = None) -> float:
    """The nominal p-value a look with ``n`` seeds (default: the last look) must reach for P <= level."""
    if level <= 0:
        return 0.0
    low, high = level / sum(weight(k, looks) for k in looks), level  # F(s) <= sum(w) s and F(s) >= s
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if null_cdf(middle, looks, two_sided) <= level else (low, middle)
    return low * weight(n or looks[-1], looks)


def _sf(stat: float, df: int) -> float:
    from scipy.stats import t

    return float(t.sf(stat, df))


def test(differences: list[float], expect: str, margin: float, looks: tuple[int, ...]) -> dict:
    """Both hypotheses of one claim on these differences: their nominal p-values (``p``) and sequential
    p-values (``P``) for the plan's ``looks``, keyed ``effect`` (the one whose rejection says there is
    an effect) and ``no effect``; with the estimate, spread and number of seeds."""
    n, mean, sd = mean_sd(differences)
    entry = {"n": n, "estimate": mean, "sd": sd, "p": {EFFECT: 1.0, NO_EFFECT: 1.0}, "P": {EFFECT: 1.0, NO_EFFECT: 1.0}}
    if n < 2:
        return entry
    se, df = max(sd / math.sqrt(n), 1e-12), n - 1
    if expect in DIRECTIONS:
        theta = DIRECTIONS[expect] * mean
        p = {EFFECT: _sf(theta / se, df), NO_EFFECT: 1 - _sf((theta - margin) / se, df)}
    else:
        apart = max(_sf((mean + margin) / se, df), 1 - _sf((mean - margin) / se, df))
        p = {EFFECT: min(1.0, 2 * min(_sf(mean / se, df), 1 - _sf(mean / se, df))), NO_EFFECT: min(1.0, 2 * apart)}
    two_sided, w = expect not in DIRECTIONS, weight(n, looks)
    entry.update(p=p, P={k: null_cdf(v / w, looks, two_sided) for k, v in p.items()})
    return entry


def smallest(entry: dict) -> float:
    """The claim's smallest sequential p-value: what decides whether, and how early, it is decided."""
    return min(entry["P"].values())


def discoveries(P: list[float], alpha: float) -> float:
    """Benjamini-Hochberg's threshold over these p-values: alpha k / m for the largest k whose k-th
    smallest p-value is at most that; 0 where none is."""
    m, threshold = len(P), 0.0
    for k, p in enumerate(sorted(P), 1):
        if p <= alpha * k / m:
            threshold = alpha * k / m
    return threshold


def verdict(entry: dict, threshold: float, expect: str, margin: float, looks: tuple[int, ...]) -> dict:
    """The claim's verdict at the page's threshold, its interval at that level (nominal p of the
    look: the Pocock boundary) and, undecided, what its seeds could see and would need."""
    rejected = {k for k, P in entry["P"].items() if P <= threshold}
    out = dict(entry, verdict=EFFECT if EFFECT in rejected else NO_EFFECT if rejected else UNDECIDED,
               within_margin=rejected == {EFFECT, NO_EFFECT}, low=math.nan, high=math.nan, detectable=math.nan,
               seeds_needed=None)
    n, sd, mean = entry["n"], entry["sd"], entry["estimate"]
    if n < 2:
        return out
    directional = expect in DIRECTIONS
    pi = nominal(threshold, looks, not directional, n)
    critical = _t(1 - (pi if directional else pi / 2), n - 1)
    half = critical * sd / math.sqrt(n)
    out.update(low=mean - half, high=mean + half, detectable=(critical + _t(POWER, n - 1)) * sd / math.sqrt(n),
               level=pi if directional else pi / 2)
    if out["verdict"] == UNDECIDED:
        out["seeds_needed"] = seeds_needed(mean, sd, expect, margin, pi)
    return out


def seeds_needed(mean: float, sd: float, expect: str, margin: float, pi: float, most: int = 1000) -> int | None:
    """About how many seeds would decide the claim if its estimate and spread held: the fewest n
    whose interval at nominal level ``pi`` would clear 0 or stay inside the margin (None: no number
    of seeds, the estimate sits on the margin)."""
    directional = expect in DIRECTIONS
    if directional:
        theta = DIRECTIONS[expect] * mean
        room = max(theta, margin - theta)  # the effect side, or the no-effect side
    else:
        room = max(abs(mean), margin - abs(mean))
    if not (room > 0 and sd > 0):
        return None if not room > 0 else 2
    one_side = pi if directional else pi / 2
    for n in range(2, most + 1):
        if _t(1 - one_side, n - 1) * sd / math.sqrt(n) < room:
            return n
    return None


def improvement(differences: list[float], better: int) -> dict:
    """Probability of improvement (Agarwal et al. 2021, paired by seed): the share of seeds on which
    the experiment beats its comparison on the figure (``better`` +1: higher is better, -1: lower),
    a tie counting half, with its 95% Wilson interval."""
    n = len(differences)
    if n == 0:
        return {"estimate": math.nan, "interval": [math.nan, math.nan], "seeds": 0}
    # (a difference within 1e-9 is a tie: two arms with the same count of right images, up to rounding)
    wins = sum(0.5 if abs(d) < 1e-9 else 1.0 if better * d > 0 else 0.0 for d in differences)
    share, z = wins / n, 1.959963984540054
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return {"estimate": share, "interval": [max(0.0, centre - half), min(1.0, centre + half)], "seeds": n}
