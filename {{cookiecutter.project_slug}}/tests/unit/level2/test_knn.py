import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from solver.base.errors import SolverError
from solver.config.experiment import KnnSpec
from solver.level2.knn import NeighbourIndex, fold_safe_knn_features, knn_features, recall_at_k


def _gaussian(n: int, d: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


@pytest.mark.parametrize("space", ["cosinesimil", "l2"])
def test_hnsw_agrees_with_exact(space):
    data, queries = _gaussian(2000, 32, 0), _gaussian(200, 32, 1)
    settings = KnnSpec(space=space)
    hnsw = NeighbourIndex(data, settings, exact=False)
    exact = NeighbourIndex(data, settings, exact=True)
    assert not hnsw.exact and exact.exact
    assert recall_at_k(hnsw, data, queries, 10) >= 0.95
    ids, dist = hnsw.query(queries, 10)
    assert ids.dtype == np.int64 and dist.dtype == np.float32 and ids.shape == (200, 10)
    assert np.all(np.diff(dist, axis=1) >= -1e-6)
    # Same distance definition: recompute the exact distance of every neighbour HNSW returned.
    found = data[ids].astype(np.float64)
    q = queries.astype(np.float64)[:, None, :]
    if space == "l2":
        expected = np.linalg.norm(found - q, axis=-1)
    else:
        expected = 1 - (found * q).sum(-1) / np.linalg.norm(found, axis=-1) / np.linalg.norm(q, axis=-1)
    np.testing.assert_allclose(dist, expected, atol=1e-4)
    exact_ids, exact_dist = exact.query(queries, 10)
    same = ids == exact_ids
    np.testing.assert_allclose(dist[same], exact_dist[same], atol=1e-4)


def test_exact_decided_by_size():
    data = _gaussian(50, 4, 0)
    assert NeighbourIndex(data, KnnSpec(exact_below=51)).exact
    assert not NeighbourIndex(data, KnnSpec(exact_below=50)).exact


@pytest.mark.parametrize(("space", "metric"), [("cosinesimil", "cosine"), ("l2", "euclidean")])
def test_exact_matches_sklearn(space, metric):
    data, queries = _gaussian(500, 16, 2), _gaussian(50, 16, 3)
    ids, dist = NeighbourIndex(data, KnnSpec(space=space), exact=True).query(queries, 7)
    ref_dist, ref_ids = NearestNeighbors(n_neighbors=7, metric=metric, algorithm="brute").fit(data).kneighbors(queries)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(dist, ref_dist, atol=1e-5)
    # k equal to the index size returns every vector, sorted.
    all_ids, _ = NeighbourIndex(data[:7], KnnSpec(space=space), exact=True).query(queries, 7)
    assert sorted(all_ids[0]) == list(range(7))


def test_knn_features_multiclass():
    labels = np.array([0, 1, 1, 2])
    ids = np.array([[1, 0, 2], [3, 3, 3]])
    dist = np.array([[1.0, 2.0, 4.0], [0.5, 0.6, 0.7]], np.float32)
    feats, names = knn_features(labels, ids, dist, 4, KnnSpec(k=3))
    assert names == [f"knn_p_{j}" for j in range(4)] + [f"knn_d_{j}" for j in range(4)] + ["knn_top_0", "knn_top_1", "knn_top_2"]
    w = 1 / (np.array([1.0, 2.0, 4.0]) + 1e-6)
    np.testing.assert_allclose(feats[0, :4], [w[1] / w.sum(), (w[0] + w[2]) / w.sum(), 0, 0], rtol=1e-5)
    np.testing.assert_allclose(feats[1, :4], [0, 0, 1, 0], rtol=1e-5)
    np.testing.assert_allclose(feats[:, :4].sum(1), 1, rtol=1e-5)
    # Nearest neighbour per class; classes with no neighbour fall back to 1.5 x the k-th distance.
    np.testing.assert_allclose(feats[0, 4:8], [2.0, 1.0, 6.0, 6.0])
    np.testing.assert_allclose(feats[1, 4:8], [1.05, 1.05, 0.5, 1.05], rtol=1e-6)
    np.testing.assert_allclose(feats[:, 8:], dist)
    only, only_names = knn_features(labels, ids, dist, 4, KnnSpec(k=3, features=["topk_distance", "class_distance"]))
    assert only_names == names[8:] + names[4:8]
    np.testing.assert_allclose(only, np.concatenate([feats[:, 8:], feats[:, 4:8]], 1))


def test_knn_features_multilabel():
    labels = np.array([[1, 0, 1], [0, 0, 1], [1, 1, 0]])
    ids = np.array([[0, 1], [2, 2]])
    dist = np.array([[1.0, 3.0], [2.0, 2.0]], np.float32)
    feats, _ = knn_features(labels, ids, dist, 3, KnnSpec(k=2, features=("label_distribution", "class_distance")))
    w = 1 / (np.array([1.0, 3.0]) + 1e-6)
    np.testing.assert_allclose(feats[0, :3], [w[0] / w.sum(), 0, 1], rtol=1e-5)
    np.testing.assert_allclose(feats[1, :3], [1, 1, 0], rtol=1e-5)
    np.testing.assert_allclose(feats[0, 3:], [1.0, 4.5, 1.0])
    np.testing.assert_allclose(feats[1, 3:], [2.0, 2.0, 3.0])


def _folds(n: int, n_folds: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.arange(n) % n_folds)


def _clusters(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, 16)) * 3
    y = rng.integers(0, 4, n)
    return (centres[y] + rng.normal(size=(n, 16))).astype(np.float32), y


@pytest.mark.parametrize("exact_below", [0, 20000])  # HNSW and exact search
def test_fold_safe_accuracy_chance_vs_signal(exact_below):
    n, n_folds = 800, 4
    emb, y = _clusters(n, 0)
    folds = _folds(n, n_folds, 1)
    settings = KnnSpec(k=10, exact_below=exact_below, features=("label_distribution",))
    # Each fold's "model" embeds slightly differently, as real fold models do.
    train = [emb + np.random.default_rng(f).normal(scale=0.1, size=emb.shape).astype(np.float32) for f in range(n_folds)]
    test = [t[:100] for t in train]
    oof, test_feats, names = fold_safe_knn_features(train, test, y, folds, 4, settings)
    assert oof.shape == (n, 4) and test_feats.shape == (100, 4) and names == [f"knn_p_{j}" for j in range(4)]
    assert not np.isnan(oof).any()
    assert (oof.argmax(1) == y).mean() > 0.9
    shuffled = np.random.default_rng(2).permutation(y)
    oof, _, _ = fold_safe_knn_features(train, test, shuffled, folds, 4, settings)
    chance = np.bincount(shuffled).max() / n
    assert abs((oof.argmax(1) == shuffled).mean() - chance) < 0.1


def test_fold_safe_never_uses_own_fold():
    # Each row's label is its own fold: a fold-f row whose features came from an index holding any fold-f row
    # (itself included, at distance 0) would put weight on class f.
    n, n_folds = 200, 4
    folds = _folds(n, n_folds, 3)
    emb = _gaussian(n, 8, 4)
    train = [emb] * n_folds
    test = [_gaussian(10, 8, 5)] * n_folds
    oof, test_feats, _ = fold_safe_knn_features(train, test, folds, folds, n_folds, KnnSpec(k=20, features=("label_distribution",)))
    assert np.all(oof[np.arange(n), folds] == 0)
    # Test features average the folds' distributions, so they still sum to 1.
    np.testing.assert_allclose(test_feats.sum(1), 1, rtol=1e-5)


def test_fold_safe_oof_row_order():
    n = 40
    folds = _folds(n, 2, 6)
    emb = _gaussian(n, 4, 7)
    y = np.arange(n) % 3
    oof, _, names = fold_safe_knn_features([emb, emb], [emb[:3], emb[:3]], y, folds, 3, KnnSpec(k=1, features=("topk_distance",)))
    for f in range(2):
        rows = folds == f
        _, dist = NeighbourIndex(emb[~rows], KnnSpec(), exact=True).query(emb[rows], 1)
        np.testing.assert_allclose(oof[rows], dist)
    assert names == ["knn_top_0"]


def test_bad_settings():
    with pytest.raises(SolverError, match="'cosine'.*cosinesimil"):
        KnnSpec(space="cosine")
    with pytest.raises(SolverError, match="'eucl'.*valid: cosinesimil, l2"):
        KnnSpec(space="eucl")
    with pytest.raises(SolverError, match="'label_dist'.*label_distribution"):
        KnnSpec(features=("label_dist",))
    with pytest.raises(SolverError, match="'votes'.*valid: class_distance, label_distribution, topk_distance"):
        KnnSpec(features=("votes",))
    with pytest.raises(SolverError, match="list of names"):
        KnnSpec(features="topk_distance")
    with pytest.raises(SolverError, match="k=0"):
        KnnSpec(k=0)
    assert KnnSpec(features=["topk_distance"]).features == ("topk_distance",)
    data = _gaussian(5, 4, 0)
    for exact in (True, False):
        with pytest.raises(SolverError, match="k=6.*5 vectors"):
            NeighbourIndex(data, KnnSpec(), exact=exact).query(data, 6)
    with pytest.raises(SolverError, match="dims"):
        NeighbourIndex(data, KnnSpec()).query(_gaussian(2, 3, 0), 1)
    with pytest.raises(SolverError, match="k=10.*fold 0"):
        fold_safe_knn_features([data, data], [data, data], np.zeros(5, int), np.array([0, 0, 0, 1, 1]), 1, KnnSpec())
    with pytest.raises(SolverError, match=r"folds contain \[1\]"):
        fold_safe_knn_features([data], [data], np.zeros(5, int), np.array([0, 0, 1, 1, 1]), 1, KnnSpec())


def test_recall_is_measured_only_when_hnsw_is_used(monkeypatch):
    """make knn's recall check builds an HNSW index; with exact search (the stage's own) it builds none and reports None."""
    import sys

    from solver.level2.knn_stage import index_recall

    data, queries = _gaussian(300, 8, 0), _gaussian(40, 8, 1)
    monkeypatch.setitem(sys.modules, "nmslib", None)  # any HNSW index built from here on fails to import nmslib
    assert index_recall(data, queries, KnnSpec(exact_below=1000)) is None
    monkeypatch.undo()
    assert 0.9 <= index_recall(data, queries, KnnSpec(exact_below=0)) <= 1.0
