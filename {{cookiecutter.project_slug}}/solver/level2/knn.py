"""Nearest-neighbour features from network embeddings, built fold-safe.

A network's embedding places an image near training images that look alike; the labels of those
neighbours (and how far they are) are strong second-level features. They leak unless every index
is built only from rows whose labels the embedding model did not see as validation: for fold f the
index holds the fold-f model's embeddings of the rows outside fold f, and only rows of fold f (and
the test set) are queried against it. Training rows never query an index that contains themselves.

Search is exact (numpy, brute force) below `exact_below` indexed vectors, where it is both exact and
faster than building a graph, and approximate (nmslib HNSW) above. Both return the same distance:
1 - cosine similarity for space "cosinesimil", Euclidean (not squared) for "l2".
"""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from solver.base.errors import SolverError
from solver.config.experiment import KnnSpec

# Inverse-distance weights: 1 / (distance + WEIGHT_EPS). Scale-free (only distance ratios matter, so the same for
# cosine and l2), and a near-duplicate image (distance ~0) dominates the vote, which is what a duplicate deserves.
WEIGHT_EPS = 1e-6
# A class with no neighbour among the k gets this multiple of the query's k-th distance: farther than anything seen,
# and scaled to the query's own neighbourhood so the value is comparable between dense and sparse regions.
MISSING_CLASS_FACTOR = 1.5


def _as_matrix(x: np.ndarray, what: str, dim: int | None = None) -> np.ndarray:
    """float32 C-contiguous (n, d) with finite values: what nmslib and the matmul both need."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise SolverError(f"{what} must be a 2-d array (rows, dims), got shape {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise SolverError(f"{what} have {x.shape[1]} dims but the index holds {dim}-dim vectors; use embeddings from the same model")
    if not np.isfinite(x).all():
        raise SolverError(f"{what} contain NaN or inf in {int((~np.isfinite(x)).any(1).sum())} rows; check the model that made them")
    return x


def _normalize(x: np.ndarray) -> np.ndarray:
    """Unit rows; a zero row stays zero (cosine similarity 0, distance 1, to everything)."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


class NeighbourIndex:
    """k-nearest-neighbour search over fixed vectors, exact (numpy) or approximate (nmslib HNSW)."""

    def __init__(self, vectors: np.ndarray, settings: KnnSpec, exact: bool | None = None):
        self.settings = settings
        self.vectors = _as_matrix(vectors, "index vectors")
        if len(self.vectors) == 0:
            raise SolverError("cannot build a kNN index over 0 vectors; every fold needs training rows outside it")
        self.exact = len(self.vectors) < settings.exact_below if exact is None else bool(exact)
        if self.exact:
            base = _normalize(self.vectors) if settings.space == "cosinesimil" else self.vectors
            self._base = base
            self._base_sq = np.einsum("ij,ij->i", base, base) if settings.space == "l2" else None
        else:
            import nmslib  # imported only when needed: it prints a CPU-feature warning on import

            self._hnsw = nmslib.init(method="hnsw", space=settings.space)
            self._hnsw.addDataPointBatch(self.vectors)
            self._hnsw.createIndex({"M": settings.M, "efConstruction": settings.ef_construction, "post": 0}, print_progress=False)

    def __len__(self) -> int:
        return len(self.vectors)

    def query(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices int64 (n, k), distances float32 (n, k)) of the k nearest index vectors, nearest first."""
        if k < 1 or k > len(self):
            raise SolverError(f"knn k={k} but the index holds {len(self)} vectors; lower knn k to at most {len(self)}")
        queries = _as_matrix(queries, "query vectors", self.vectors.shape[1])
        if len(queries) == 0:
            return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
        return self._exact(queries, k) if self.exact else self._approximate(queries, k)

    def _exact(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        cosine = self.settings.space == "cosinesimil"
        q = _normalize(queries) if cosine else queries
        n, d = self._base.shape
        # Chunk the queries so the (chunk, n) score matrix and the (chunk, k, d) gather stay near 256 MB.
        chunk = max(1, min(2**26 // n, 2**25 // (k * d)))
        ids = np.empty((len(q), k), np.int64)
        dist = np.empty((len(q), k), np.float32)
        for start in range(0, len(q), chunk):
            qc = q[start : start + chunk]
            score = -(qc @ self._base.T) if cosine else self._base_sq[None, :] - 2 * (qc @ self._base.T)  # smaller = nearer
            top = np.argpartition(score, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (len(qc), 1))
            # float32 scores only pick the candidates; their distances are recomputed in float64 so near-zero l2
            # distances do not lose their digits to the |q|^2 + |x|^2 - 2 q.x cancellation.
            cand = self._base[top].astype(np.float64)
            q64 = qc.astype(np.float64)[:, None, :]
            exact = 1.0 - (cand * q64).sum(-1) if cosine else np.sqrt(((cand - q64) ** 2).sum(-1))
            order = np.lexsort((top, exact), axis=-1)  # by distance, ties by index: deterministic
            ids[start : start + chunk] = np.take_along_axis(top, order, 1)
            dist[start : start + chunk] = np.take_along_axis(exact, order, 1)
        return ids, dist

    def _approximate(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self._hnsw.setQueryTimeParams({"efSearch": max(self.settings.ef_search, k)})
        results = self._hnsw.knnQueryBatch(queries, k=k)
        ids = np.empty((len(queries), k), np.int64)
        dist = np.empty((len(queries), k), np.float32)
        short = []
        for i, (found, d) in enumerate(results):
            if len(found) < k:  # HNSW may return fewer than k on a degenerate graph; those rows are searched exactly
                short.append(i)
                continue
            ids[i], dist[i] = found, d
        if self.settings.space == "l2":
            np.sqrt(np.maximum(dist, 0, out=dist), out=dist)  # nmslib's l2 returns squared distances
        if short:
            ids[short], dist[short] = NeighbourIndex(self.vectors, self.settings, exact=True).query(queries[short], k)
        return ids, dist


def recall_at_k(index: NeighbourIndex, vectors: np.ndarray, queries: np.ndarray, k: int) -> float:
    """Fraction of the exact top-k neighbours that `index` (built over `vectors`) finds."""
    exact_ids, _ = NeighbourIndex(vectors, index.settings, exact=True).query(queries, k)
    found_ids, _ = index.query(queries, k)
    hits = sum(len(np.intersect1d(a, b)) for a, b in zip(exact_ids, found_ids))
    return hits / exact_ids.size if exact_ids.size else 1.0


def _check_labels(index_labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Multiclass (N,) int64 class indices, or multilabel (N, C) float32 0/1 targets."""
    labels = np.asarray(index_labels)
    if labels.ndim == 1:
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise SolverError(f"index labels must be class indices in [0, {num_classes}), found {labels.min()}..{labels.max()}")
        return labels.astype(np.int64)
    if labels.ndim == 2 and labels.shape[1] == num_classes:
        return labels.astype(np.float32)
    raise SolverError(f"index labels must be (N,) class indices or (N, {num_classes}) 0/1 multilabel targets, got shape {labels.shape}")


def _per_class(labels: np.ndarray, neighbour_ids: np.ndarray, distances: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(weighted label distribution, nearest distance per class or inf), both (n, C).

    One pass per neighbour rank keeps memory at (n, C): an (n, k, C) one-hot tensor would not fit for many classes.
    """
    n, k = neighbour_ids.shape
    weight = 1.0 / (distances + WEIGHT_EPS)
    prob = np.zeros((n, num_classes))
    nearest = np.full((n, num_classes), np.inf)
    rows = np.arange(n)
    for i in range(k):
        d = distances[:, i]
        if labels.ndim == 1:
            cls = labels[neighbour_ids[:, i]]
            prob[rows, cls] += weight[:, i]
            nearest[rows, cls] = np.minimum(nearest[rows, cls], d)
        else:
            has = labels[neighbour_ids[:, i]]
            prob += has * weight[:, i : i + 1]
            nearest = np.where(has > 0, np.minimum(nearest, d[:, None]), nearest)
    return prob / weight.sum(1, keepdims=True), nearest


def knn_features(
    index_labels: np.ndarray, neighbour_ids: np.ndarray, distances: np.ndarray, num_classes: int, settings: KnnSpec
) -> tuple[np.ndarray, list[str]]:
    """Features per query from its k neighbours: (float32 (n, F), names), groups in settings.features order.

    label_distribution "knn_p_<j>": inverse-distance-weighted mean of the neighbours' one-hot (multiclass, rows
        sum to 1) or 0/1 (multilabel) label vectors; weight 1 / (distance + 1e-6).
    class_distance "knn_d_<j>": distance to the nearest neighbour of class j (multilabel: having label j); 1.5 x the
        k-th distance when no neighbour among the k has it.
    topk_distance "knn_top_<i>": the k distances, nearest first.
    """
    neighbour_ids = np.asarray(neighbour_ids, dtype=np.int64)
    distances = np.asarray(distances, dtype=np.float64)
    if neighbour_ids.ndim != 2 or neighbour_ids.shape != distances.shape or neighbour_ids.shape[1] == 0:
        raise SolverError(f"neighbour ids {neighbour_ids.shape} and distances {distances.shape} must both be (queries, k) with k >= 1")
    n_index = len(index_labels)
    if neighbour_ids.size and (neighbour_ids.min() < 0 or neighbour_ids.max() >= n_index):
        raise SolverError(f"neighbour ids must lie in [0, {n_index}) (rows of the index labels), found {neighbour_ids.min()}..{neighbour_ids.max()}")
    prob, nearest = _per_class(_check_labels(index_labels, num_classes), neighbour_ids, distances, num_classes)
    k = neighbour_ids.shape[1]
    blocks, names = [], []
    for group in settings.features:
        if group == "label_distribution":
            blocks.append(prob)
            names += [f"knn_p_{j}" for j in range(num_classes)]
        elif group == "class_distance":
            blocks.append(np.where(np.isinf(nearest), distances[:, -1:] * MISSING_CLASS_FACTOR, nearest))
            names += [f"knn_d_{j}" for j in range(num_classes)]
        else:
            blocks.append(distances)
            names += [f"knn_top_{i}" for i in range(k)]
    return np.concatenate(blocks, axis=1).astype(np.float32), names


def fold_safe_knn_features(
    train_embeddings: list[np.ndarray],
    test_embeddings: list[np.ndarray],
    y: np.ndarray,
    folds: np.ndarray,
    num_classes: int,
    settings: KnnSpec,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(oof features (N_train, F) in train row order, test features (N_test, F) averaged over folds, names).

    train_embeddings[f] / test_embeddings[f]: every train / test row embedded by fold f's model. Fold f's index holds
    rows outside fold f (labels the fold-f model trained on), and is queried by rows of fold f and by the test set, so
    no row's features come from an index that contains its own label.
    """
    n_folds = len(train_embeddings)
    folds = np.asarray(folds)
    y = np.asarray(y)
    if n_folds == 0 or len(test_embeddings) != n_folds:
        raise SolverError(f"need one train and one test embedding array per fold, got {n_folds} train and {len(test_embeddings)} test")
    if folds.shape != (len(y),):
        raise SolverError(f"folds has shape {folds.shape} but y has {len(y)} rows; pass one fold index per training row")
    bad = sorted(set(np.unique(folds).tolist()) - set(range(n_folds)))
    if bad:
        raise SolverError(f"folds contain {bad[:5]} but embeddings were given for folds 0..{n_folds - 1}; pass embeddings from every fold's model")
    oof, test_sum, names = None, None, []
    for f in tqdm(range(n_folds), desc="knn folds", leave=False, mininterval=1):
        train = _as_matrix(train_embeddings[f], f"train embeddings of fold {f}")
        test = _as_matrix(test_embeddings[f], f"test embeddings of fold {f}", train.shape[1])
        if len(train) != len(y):
            raise SolverError(f"train embeddings of fold {f} have {len(train)} rows but y has {len(y)}; embed every training row")
        valid = folds == f
        index_rows = np.flatnonzero(~valid)
        if settings.k > len(index_rows):
            raise SolverError(
                f"knn k={settings.k} but fold {f}'s index holds only {len(index_rows)} training rows (those outside fold {f}); lower knn k"
            )
        index = NeighbourIndex(train[index_rows], settings)
        index_labels = y[index_rows]
        ids, dist = index.query(train[valid], settings.k)
        valid_features, names = knn_features(index_labels, ids, dist, num_classes, settings)
        ids, dist = index.query(test, settings.k)
        test_features, _ = knn_features(index_labels, ids, dist, num_classes, settings)
        if oof is None:
            oof = np.full((len(y), len(names)), np.nan, np.float32)
            test_sum = np.zeros((len(test), len(names)), np.float64)
        if len(test) != len(test_sum):
            raise SolverError(f"test embeddings of fold {f} have {len(test)} rows but fold 0's have {len(test_sum)}; embed every test row")
        oof[valid] = valid_features
        test_sum += test_features
    return oof, (test_sum / n_folds).astype(np.float32), names
