"""Cross-validation folds shared by every model: random, DBSCAN-clustered, spatial blocks, and
leave-one-region/zone-out. Pure computation (no I/O); the training-table job saves them.

Layout (docs/contracts.md section 3): one row per pedon, one integer column per scheme, -1 = unused.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree
from sklearn.cluster import DBSCAN, KMeans
from sklearn.model_selection import GroupKFold, KFold

from misomap.labels.config import FoldsConfig
from misomap.core.errors import MisomapError

log = logging.getLogger(__name__)


class FoldsError(MisomapError):
    """Folds cannot be made or read; the message names the scheme or column at fault."""


def dbscan_scheme_name(eps_m: float) -> str:
    """Column name of a DBSCAN scheme, e.g. `dbscan_1km`, `dbscan_10km`, `dbscan_500m`."""
    return f"dbscan_{eps_m / 1000:g}km" if eps_m >= 1000 else f"dbscan_{eps_m:g}m"


def _grouped(groups: np.ndarray, k: int, seed: int, scheme: str) -> np.ndarray:
    """Assign whole groups to k folds (shuffled, balanced by size); fewer folds if fewer groups;
    none (-1) if one group holds over half the pedons, since its fold would train on the rest."""
    sizes = np.unique(groups, return_counts=True)[1]
    n_groups, largest = len(sizes), sizes.max() / len(groups)
    if n_groups < 2 or largest > 0.5:
        log.warning("scheme %s: %d group(s), the largest holding %.0f%% of the pedons, cannot split; "
                    "every pedon marked -1 (for DBSCAN lower folds.dbscan_eps_m, for blocks lower "
                    "folds.block_size_m)", scheme, n_groups, 100 * largest)
        return np.full(len(groups), -1, dtype=np.int64)
    if largest > 1 / k:
        log.warning("scheme %s: the largest group holds %.0f%% of the pedons, more than one fold's "
                    "share; folds will be unbalanced", scheme, 100 * largest)
    if n_groups < k:
        log.warning("scheme %s: %d groups < k=%d; using %d folds", scheme, n_groups, k, n_groups)
        k = n_groups
    out = np.full(len(groups), -1, dtype=np.int64)
    splitter = GroupKFold(n_splits=k, shuffle=True, random_state=seed)
    for fold, (_, test) in enumerate(splitter.split(groups, groups=groups)):
        out[test] = fold
    return out


def _leave_one_out(labels: pd.Series, scheme: str) -> np.ndarray:
    """One fold per distinct label (sorted), -1 where the label is missing."""
    codes, names = pd.factorize(labels, sort=True)
    if len(names) < 2:
        log.warning("scheme %s: %d distinct value(s); every pedon marked -1", scheme, len(names))
        return np.full(len(labels), -1, dtype=np.int64)
    missing = int((codes < 0).sum())
    if missing:
        log.warning("scheme %s: %d pedons have no value, marked -1", scheme, missing)
    return codes.astype(np.int64)


def make_folds(pedons: pd.DataFrame, config: FoldsConfig, seed: int) -> pd.DataFrame:
    """Folds for pedons with columns `pedon_id`, `x`, `y` (EPSG:3338 m) and optionally `region`,
    `zone`. Reproducible: the same pedons, config and seed give the same table."""
    for col in ("pedon_id", "x", "y"):
        if col not in pedons.columns:
            raise FoldsError(f"pedon table has no column {col!r} (have {list(pedons.columns)})")
    if pedons["pedon_id"].duplicated().any():
        dup = pedons.loc[pedons["pedon_id"].duplicated(), "pedon_id"].iloc[0]
        raise FoldsError(f"pedon_id {dup!r} occurs more than once; folds need unique ids")
    if len(pedons) < config.k:
        raise FoldsError(f"{len(pedons)} pedons cannot fill k={config.k} folds")
    # Sort by id so the folds do not depend on the row order of the input.
    order = np.argsort(pedons["pedon_id"].astype(str).to_numpy(), kind="stable")
    p = pedons.iloc[order].reset_index(drop=True)
    xy = p[["x", "y"]].to_numpy(dtype=np.float64)
    out = pd.DataFrame({"pedon_id": p["pedon_id"].astype(str)})

    rand = np.empty(len(p), dtype=np.int64)
    for fold, (_, test) in enumerate(KFold(config.k, shuffle=True, random_state=seed).split(xy)):
        rand[test] = fold
    out["random"] = rand
    for eps in config.dbscan_eps_m:
        name = dbscan_scheme_name(eps)
        clusters = DBSCAN(eps=eps, min_samples=1).fit_predict(xy)
        log.info("scheme %s: %d clusters from %d pedons", name, clusters.max() + 1, len(p))
        out[name] = _grouped(clusters, config.k, seed, name)
    blocks = np.floor(xy / config.block_size_m).astype(np.int64)
    block_ids = np.unique(blocks, axis=0, return_inverse=True)[1].ravel()
    out["blocks"] = _grouped(block_ids, config.k, seed, "blocks")
    if config.regions and "region" in p.columns:
        out["region"] = _leave_one_out(p["region"], "region")
    if config.zones and "zone" in p.columns:
        out["zone"] = _leave_one_out(p["zone"], "zone")
    return out


def scheme_columns(folds: pd.DataFrame) -> list[str]:
    """The fold-scheme columns of a folds table (everything but `pedon_id`)."""
    return [c for c in folds.columns if c != "pedon_id"]


def distance_to_training(xy: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """For each pedon, the distance (m) to the nearest pedon outside its own test fold that the
    model of that fold was trained on; NaN for pedons with fold -1."""
    xy = np.asarray(xy, dtype=np.float64)
    out = np.full(len(xy), np.nan)
    used = fold >= 0
    for f in np.unique(fold[used]):
        test = fold == f
        train = used & ~test
        if train.any():
            out[test] = cKDTree(xy[train]).query(xy[test], k=1)[0]
    return out


def inner_folds(fold_col: np.ndarray, test_fold: int, max_folds: int, min_share: float) -> list[int]:
    """The folds of the same scheme inside `test_fold`'s training part that nested cross-validation
    holds out in turn: those with at least `min_share` of the training pedons, the `max_folds`
    largest (ties to the lower id). A FoldsError if none qualifies."""
    train = (fold_col >= 0) & (fold_col != test_fold)
    ids, counts = np.unique(fold_col[train], return_counts=True)
    ok = counts >= min_share * int(train.sum())
    if ok.sum() < 1 or len(ids) < 2:
        raise FoldsError(f"fold {test_fold}: its training part has {len(ids)} fold(s), "
                         f"{int(ok.sum())} holding {min_share:.0%} of its pedons: nested validation needs one "
                         "to hold out and one to train on; lower miso.design.min_share or drop this scheme")
    ids, counts = ids[ok], counts[ok]
    return sorted(int(f) for f in ids[np.argsort(-counts, kind="stable")][:max_folds])


VAL_TOLERANCE = 0.02
"""Validation holds `val_fraction` ± this share of the training pedons."""
VAL_CLUSTER_SHARE = 0.01
"""Target size of a validation cluster as a share of the training pedons: small enough to hit the
fraction within the tolerance, large enough to be a spatial patch rather than scattered pedons."""


def carve_validation(fold_col: np.ndarray, test_fold: int | None, fraction: float, seed: int,
                     xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split the training part (fold not `test_fold`, not -1) into train and validation masks.

    Validation is `fraction` ± VAL_TOLERANCE of the training pedons, made of whole spatial
    clusters: each training fold is cut by k-means on `xy` (EPSG:3338 m) into patches of about
    VAL_CLUSTER_SHARE of the training pedons, and patches are taken in a seeded random order, so
    validation pedons sit in compact groups away from most training pedons. It never holds a whole
    training fold (the model still learns from every region) and never touches the test fold."""
    used = fold_col >= 0 if test_fold is None else (fold_col >= 0) & (fold_col != test_fold)
    n = int(used.sum())
    if n < 2:
        raise FoldsError(f"fold {test_fold} leaves {n} training pedon(s): need 2 to carve a validation split")
    size = max(1, int(VAL_CLUSTER_SHARE * n))
    patch = np.full(len(fold_col), -1, dtype=np.int64)
    next_id = 0
    for f in np.unique(fold_col[used]):
        idx = np.flatnonzero(used & (fold_col == f))
        k = min(max(1, round(len(idx) / size)), len(np.unique(xy[idx], axis=0)))
        labels = (KMeans(k, n_init=1, random_state=seed).fit_predict(xy[idx]) if k > 1
                  else np.zeros(len(idx), dtype=np.int64))
        patch[idx] = next_id + labels
        next_id += k
    ids, counts = np.unique(patch[used], return_counts=True)
    fold_of = {int(p): int(fold_col[np.flatnonzero(patch == p)[0]]) for p in ids}
    fold_size = {int(f): int((fold_col[used] == f).sum()) for f in np.unique(fold_col[used])}
    need, tol = fraction * n, VAL_TOLERANCE * n
    held, taken, per_fold = 0, [], dict.fromkeys(fold_size, 0)
    rng = np.random.default_rng([seed, 0 if test_fold is None else test_fold + 1])
    for i in rng.permutation(len(ids)):
        p, c = int(ids[i]), int(counts[i])
        if held + c > need + tol or per_fold[fold_of[p]] + c >= fold_size[fold_of[p]]:
            continue  # overshoots, or would hand validation a whole training fold
        taken.append(p)
        held += c
        per_fold[fold_of[p]] += c
        if held >= need - tol:
            break
    if held < need - tol:
        raise FoldsError(f"fold {test_fold}: could only carve {held} of {n} training pedons "
                           f"({held / n:.0%}) into validation, not {fraction:.0%}: lower "
                           "train.val_fraction or use more pedons")
    val = np.isin(patch, taken) & used
    return used & ~val, val
