"""The stratified estimators against independent, straightforward computations of the published
formulas on the published worked examples (Olofsson et al. 2014 Table 8; Stehman 2014 §3), to 1e-9,
and against the figures those papers print."""

from __future__ import annotations

import math

import numpy as np
import pytest

from misomap.assess.estimators import StratifiedSample, compare, estimate, wilson

# Olofsson et al. (2014), RSE 148:42-57, section 5 / Table 8: rows map, columns reference; 30 m pixels
OLOFSSON_COUNTS = [[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]]
OLOFSSON_PIXELS = [200_000, 150_000, 3_200_000, 6_450_000]
HA_PER_PIXEL = 0.09


def _points(counts: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    mapped = [i for i, row in enumerate(counts) for j, c in enumerate(row) for _ in range(c)]
    reference = [j for row in counts for j, c in enumerate(row) for _ in range(c)]
    return np.array(mapped), np.array(reference)


def _olofsson_by_hand(counts: list[list[int]], pixels: list[int]) -> dict[str, list[float]]:
    """Olofsson et al. (2014) eqs. 4-10 written out as loops over the error matrix of counts."""
    q = len(counts)
    total = sum(pixels)
    w = [a / total for a in pixels]
    n_row = [sum(r) for r in counts]
    p = [[w[i] * counts[i][j] / n_row[i] for j in range(q)] for i in range(q)]
    area = [sum(p[i][k] for i in range(q)) for k in range(q)]
    area_se = [math.sqrt(sum(w[i] ** 2 * (counts[i][k] / n_row[i]) * (1 - counts[i][k] / n_row[i]) / (n_row[i] - 1)
                             for i in range(q))) for k in range(q)]
    users = [p[i][i] / sum(p[i]) for i in range(q)]
    producers = [p[j][j] / area[j] for j in range(q)]
    overall = sum(p[i][i] for i in range(q))
    overall_se = math.sqrt(sum(w[i] ** 2 * users[i] * (1 - users[i]) / (n_row[i] - 1) for i in range(q)))
    users_se = [math.sqrt(users[i] * (1 - users[i]) / (n_row[i] - 1)) for i in range(q)]
    producers_se = []
    for j in range(q):
        n_ref = sum(pixels[i] * counts[i][j] / n_row[i] for i in range(q))  # estimated pixels of reference j
        first = pixels[j] ** 2 * (1 - producers[j]) ** 2 * users[j] * (1 - users[j]) / (n_row[j] - 1)
        second = producers[j] ** 2 * sum(pixels[i] ** 2 * counts[i][j] / n_row[i] * (1 - counts[i][j] / n_row[i])
                                         / (n_row[i] - 1) for i in range(q) if i != j)
        producers_se.append(math.sqrt((first + second) / n_ref**2))
    return {"area": area, "area_se": area_se, "users": users, "users_se": users_se, "producers": producers,
            "producers_se": producers_se, "overall": [overall], "overall_se": [overall_se],
            "matrix": [v for row in p for v in row]}


def _ours(sample: StratifiedSample, mapped: np.ndarray, reference: np.ndarray, q: int):
    fig = estimate(sample, mapped, reference, q, tuple("ABCD"[:q]), 1.0, np.zeros(q))
    total = sample.population
    return fig, {"area": [c.area_km2.value / total for c in fig.classes],
                 "area_se": [c.area_km2.se / total for c in fig.classes],
                 "users": [c.users.value for c in fig.classes], "users_se": [c.users.se for c in fig.classes],
                 "producers": [c.producers.value for c in fig.classes],
                 "producers_se": [c.producers.se for c in fig.classes],
                 "overall": [fig.overall.value], "overall_se": [fig.overall.se], "matrix": list(fig.matrix.ravel())}


def test_olofsson_worked_example_matches_the_formulas_and_the_paper():
    mapped, reference = _points(OLOFSSON_COUNTS)
    sample = StratifiedSample(mapped, np.array(OLOFSSON_PIXELS))
    fig, ours = _ours(sample, mapped, reference, 4)
    hand = _olofsson_by_hand(OLOFSSON_COUNTS, OLOFSSON_PIXELS)
    for key, values in hand.items():
        assert ours[key] == pytest.approx(values, abs=1e-9, rel=0), key
    # the paper's figures (section 5): deforestation 21,158 ± 6,158 ha, forest gain 11,686 ± 3,756 ha,
    # stable forest 285,770 ± 15,510 ha, stable non-forest 581,386 ± 16,282 ha; overall accuracy 0.95
    ha = [c.area_km2.value * HA_PER_PIXEL for c in fig.classes]
    half = [1.96 * c.area_km2.se * HA_PER_PIXEL for c in fig.classes]
    assert [round(v) for v in ha] == [21158, 11686, 285770, 581386]
    assert [round(v) for v in half] == [6158, 3756, 15510, 16282]
    assert [round(c.users.value, 2) for c in fig.classes] == [0.88, 0.73, 0.93, 0.96]
    assert [round(c.producers.value, 2) for c in fig.classes] == [0.75, 0.85, 0.93, 0.96]
    assert round(fig.overall.value, 2) == 0.95


# Stehman (2014), IJRS 35:4923-4939, section 3: 4 strata of 10 points, strata are not the map classes
STEHMAN_STRATA = "A" * 10 + "B" * 10 + "C" * 10 + "D" * 10
STEHMAN_MAP = "AAAAAAABBB" + "ABBBBBBBBB" + "BBCCCCCCBB" + "DDDDDDDDDD"
STEHMAN_REF = "AAAAACBABC" + "ABBBBBAABB" + "CCCCCDDBBA" + "DDDDDDDCCB"
STEHMAN_PIXELS = [40_000, 30_000, 20_000, 10_000]


def _stehman_by_hand(strata: str, m: str, r: str, pixels: list[int]) -> dict[str, float]:
    """Stehman (2014) eqs. 2-4 and 25-28 as loops: per-stratum means, variances and covariances."""
    names = sorted(set(strata))
    big_n = sum(pixels)

    def parts(y: list[float], x: list[float]) -> tuple[float, float]:
        ty = tx = 0.0
        stats = []
        for h, name in enumerate(names):
            ys = [y[i] for i in range(len(y)) if strata[i] == name]
            xs = [x[i] for i in range(len(x)) if strata[i] == name]
            n = len(ys)
            my, mx = sum(ys) / n, sum(xs) / n
            syy = sum((v - my) ** 2 for v in ys) / (n - 1)
            sxx = sum((v - mx) ** 2 for v in xs) / (n - 1)
            sxy = sum((a - my) * (b - mx) for a, b in zip(ys, xs)) / (n - 1)
            ty, tx = ty + pixels[h] * my, tx + pixels[h] * mx
            stats.append((pixels[h], n, syy, sxx, sxy))
        r_hat = ty / tx
        var = sum(nh**2 * (syy + r_hat**2 * sxx - 2 * r_hat * sxy) / n for nh, n, syy, sxx, sxy in stats) / tx**2
        return r_hat, math.sqrt(var)

    ones = [1.0] * len(m)
    out = {}
    for k in "ABCD":
        out[f"area_{k}"], out[f"area_se_{k}"] = parts([float(v == k) for v in r], ones)
        hit = [float(a == k and b == k) for a, b in zip(m, r)]
        out[f"users_{k}"], out[f"users_se_{k}"] = parts(hit, [float(v == k) for v in m])
        out[f"producers_{k}"], out[f"producers_se_{k}"] = parts(hit, [float(v == k) for v in r])
    out["overall"], out["overall_se"] = parts([float(a == b) for a, b in zip(m, r)], ones)
    out["p_BC"] = parts([float(a == "B" and b == "C") for a, b in zip(m, r)], ones)[0]
    assert big_n == 100_000
    return out


def test_stehman_worked_example_matches_the_formulas_and_the_paper():
    code = {c: i for i, c in enumerate("ABCD")}
    stratum = np.array([code[c] for c in STEHMAN_STRATA])
    mapped = np.array([code[c] for c in STEHMAN_MAP])
    reference = np.array([code[c] for c in STEHMAN_REF])
    fig, ours = _ours(StratifiedSample(stratum, np.array(STEHMAN_PIXELS)), mapped, reference, 4)
    hand = _stehman_by_hand(STEHMAN_STRATA, STEHMAN_MAP, STEHMAN_REF, STEHMAN_PIXELS)
    for i, k in enumerate("ABCD"):
        for key in ("area", "area_se", "users", "users_se", "producers", "producers_se"):
            assert ours[key][i] == pytest.approx(hand[f"{key}_{k}"], abs=1e-9, rel=0), (key, k)
    assert ours["overall"][0] == pytest.approx(hand["overall"], abs=1e-9, rel=0)
    assert ours["overall_se"][0] == pytest.approx(hand["overall_se"], abs=1e-9, rel=0)
    assert fig.matrix[1, 2] == pytest.approx(hand["p_BC"], abs=1e-9, rel=0)
    # the paper's figures (pp. 4932-4936), printed to 2-3 decimals
    b = fig.classes[1]
    printed = {"area A": (ours["area"][0], 0.35), "area C": (ours["area"][2], 0.20), "OA": (fig.overall.value, 0.63),
               "UA B": (b.users.value, 0.574), "PA B": (b.producers.value, 0.794), "p BC": (fig.matrix[1, 2], 0.08),
               "SE area A": (ours["area_se"][0], 0.082), "SE area C": (ours["area_se"][2], 0.064),
               "SE OA": (fig.overall.se, 0.085), "SE UA B": (b.users.se, 0.125), "SE PA B": (b.producers.se, 0.117)}
    for name, (got, paper) in printed.items():
        assert got == pytest.approx(paper, abs=6e-4), name


def test_wilson_interval_by_the_textbook_formula():
    z = 1.959963984540054
    # 0 of 10: [0, z²/(n+z²)]
    assert wilson(0.0, 0.0, 10) == pytest.approx((0.0, z**2 / (10 + z**2)), abs=1e-12)
    # a simple random sample of n: SE² = p(1-p)/(n-1), so the effective size is n - 1
    p, n = 0.3, 51
    low, high = wilson(p, math.sqrt(p * (1 - p) / (n - 1)), n)
    m = n - 1
    centre = (p + z**2 / (2 * m)) / (1 + z**2 / m)
    half = z / (1 + z**2 / m) * math.sqrt(p * (1 - p) / m + z**2 / (4 * m**2))
    assert (low, high) == pytest.approx((centre - half, centre + half), abs=1e-12)


def test_points_outside_the_population_count_toward_no_class():
    # the Olofsson matrix plus 10 "water" points in the first stratum: its weight now covers them too
    mapped, reference = _points(OLOFSSON_COUNTS)
    mapped = np.concatenate([mapped, np.zeros(10, int)])
    reference = np.concatenate([reference, -np.ones(10, int)])
    fig = estimate(StratifiedSample(mapped, np.array(OLOFSSON_PIXELS)), mapped, reference, 4, tuple("ABCD"), 1.0,
                   np.zeros(4))
    water = OLOFSSON_PIXELS[0] * 10 / 85
    assert sum(c.area_km2.value for c in fig.classes) == pytest.approx(sum(OLOFSSON_PIXELS) - water, rel=1e-12)
    assert fig.assessed_km2 == pytest.approx(sum(OLOFSSON_PIXELS) - water, rel=1e-12)
    assert sum(c.share.value for c in fig.classes) == pytest.approx(1.0, abs=1e-12)
    assert fig.classes[0].users.value == pytest.approx(66 / 75, abs=1e-12)  # water is no commission error
    assert fig.points == len(mapped) - 10


def test_compare_counts_the_discordant_points_and_tests_them_exactly():
    mapped, reference = _points(OLOFSSON_COUNTS)
    sample = StratifiedSample(mapped, np.array(OLOFSSON_PIXELS))
    other = reference.copy()
    other[:6] = (reference[:6] + 1) % 4  # B is wrong on 6 points where A is right (A's first 6 points are right)
    other[75:80] = (reference[75:80] + 1) % 4
    c = compare(sample, other, mapped, reference)
    b_wrong_a_right = int(np.sum((other == reference) & (mapped != reference)))
    a_wrong_b_right = int(np.sum((other != reference) & (mapped == reference)))
    assert (c.only_a_right, c.only_b_right) == (b_wrong_a_right, a_wrong_b_right)
    k, n = min(b_wrong_a_right, a_wrong_b_right), b_wrong_a_right + a_wrong_b_right
    assert c.mcnemar_p == pytest.approx(min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n), abs=1e-12)
    assert c.difference.value == pytest.approx(c.overall_a.value - c.overall_b.value, abs=1e-12)
