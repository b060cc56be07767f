"""Prior shift: the EM estimate of the test priors (checked against QuaPy's EMQ) and the posterior adjustment."""

import numpy as np
import pytest
from quapy.method.aggregative import EMQ
from sklearn.metrics import log_loss

from solver.adapt.prior_shift import (
    adjust,
    adjust_labels,
    apply_temperature,
    calibrate_folds,
    class_priors,
    estimate_label_priors,
    estimate_priors,
    fit_temperature,
    fold_temperatures,
    resample_to_priors,
)

TRAIN_PRIORS = np.array([0.4, 0.3, 0.2, 0.1])


def _bayes_posteriors(test_priors, n, seed, separation=1.5):
    """Labels drawn with test_priors; posteriors of the Bayes classifier for the *training* priors (1-D Gaussians).

    Calibrated for the training distribution: exactly what a well-trained model outputs under label shift.
    """
    rng = np.random.default_rng(seed)
    y = rng.choice(len(test_priors), n, p=test_priors)
    means = np.arange(len(test_priors)) * separation
    x = rng.normal(means[y], 1.0)
    likelihood = np.exp(-0.5 * (x[:, None] - means[None, :]) ** 2)
    joint = likelihood * TRAIN_PRIORS
    return y, joint / joint.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("test_priors, seed", [([0.1, 0.2, 0.3, 0.4], 0), ([0.7, 0.1, 0.1, 0.1], 1), ([0.25, 0.25, 0.25, 0.25], 2)])
def test_em_matches_quapy_emq_and_the_true_priors(test_priors, seed):
    y, posteriors = _bayes_posteriors(np.array(test_priors), 4000, seed)
    ours, adjusted, iterations = estimate_priors(posteriors, TRAIN_PRIORS)
    # QuaPy's EMQ on the same posteriors, run to convergence: its default stop (successive estimates within 1e-4)
    # can end while EM is still creeping along a flat likelihood, up to 2e-3 short of the fixed point here.
    theirs, _ = EMQ.EM(TRAIN_PRIORS, posteriors, epsilon=1e-8)
    assert np.abs(ours - theirs).mean() < 1e-3, (ours, theirs)
    assert iterations > 1 and ours.sum() == pytest.approx(1)
    assert np.allclose(adjusted.sum(axis=1), 1)
    # The posteriors are calibrated, so EM is consistent: close to the priors the labels were drawn with.
    true = class_priors(y, 4)
    assert np.abs(ours - true).mean() < 0.02
    assert np.abs(ours - true).mean() < np.abs(TRAIN_PRIORS - true).mean() / 3


def test_adjusting_to_the_shifted_priors_improves_log_loss_and_accuracy():
    y, posteriors = _bayes_posteriors(np.array([0.05, 0.1, 0.25, 0.6]), 4000, 3)
    estimated, adjusted, _ = estimate_priors(posteriors, TRAIN_PRIORS)
    before = log_loss(y, posteriors, labels=range(4)), (posteriors.argmax(1) == y).mean()
    after = log_loss(y, adjusted, labels=range(4)), (adjusted.argmax(1) == y).mean()
    assert after[0] < before[0] - 0.05 and after[1] > before[1] + 0.02, (before, after)
    oracle = adjust(posteriors, TRAIN_PRIORS, class_priors(y, 4))
    assert log_loss(y, adjusted, labels=range(4)) == pytest.approx(log_loss(y, oracle, labels=range(4)), abs=0.01)


def test_adjust_is_the_identity_for_unchanged_priors_and_keeps_rows_normalised():
    _, posteriors = _bayes_posteriors(TRAIN_PRIORS, 200, 4)
    assert np.allclose(adjust(posteriors, TRAIN_PRIORS, TRAIN_PRIORS), posteriors)
    moved = adjust(posteriors, TRAIN_PRIORS, [0.0, 0.5, 0.5, 0.0])
    assert np.allclose(moved.sum(axis=1), 1) and (moved[:, [0, 3]] == 0).all()


def test_multilabel_label_priors_are_estimated_per_label():
    rng = np.random.default_rng(5)
    train_freq, test_freq = np.array([0.3, 0.1]), np.array([0.6, 0.02])
    y = rng.random((6000, 2)) < test_freq
    x = rng.normal(np.where(y, 1.5, 0.0), 1.0)
    # Per label, the Bayes posterior for the training frequency.
    odds = np.exp(1.5 * x - 1.125) * train_freq / (1 - train_freq)
    probs = odds / (1 + odds)
    estimated = estimate_label_priors(probs, train_freq)
    assert np.abs(estimated - y.mean(axis=0)).max() < 0.03
    adjusted = adjust_labels(probs, train_freq, estimated)
    assert log_loss(y[:, 0], adjusted[:, 0]) < log_loss(y[:, 0], probs[:, 0])


def test_resampling_reaches_the_requested_priors():
    y = np.repeat(np.arange(3), [50, 30, 20])
    index = resample_to_priors(y, [0.1, 0.1, 0.8], 1000, np.random.default_rng(0))
    assert len(index) == 1000
    assert np.abs(class_priors(y[index], 3) - [0.1, 0.1, 0.8]).max() < 0.05


def test_temperature_scaling_undoes_under_confidence_and_helps_em():
    """An under-confident model (posteriors softened with T = 3) makes EM under-shoot; calibrating first fixes it."""
    y_oof, oof = _bayes_posteriors(TRAIN_PRIORS, 4000, 9)  # the temperature is fitted on OOF (training distribution)
    temperature = fit_temperature(apply_temperature(oof, 3.0), y_oof)
    assert temperature == pytest.approx(1 / 3, rel=0.1)
    y, calibrated = _bayes_posteriors(np.array([0.7, 0.1, 0.1, 0.1]), 4000, 6)
    soft = apply_temperature(calibrated, 3.0)
    true = class_priors(y, 4)
    raw_error = np.abs(estimate_priors(soft, TRAIN_PRIORS)[0] - true).mean()
    fixed_error = np.abs(estimate_priors(apply_temperature(soft, temperature), TRAIN_PRIORS)[0] - true).mean()
    assert fixed_error < raw_error / 2, (raw_error, fixed_error)
    labels = (np.random.default_rng(7).random((2000, 3)) < 0.3).astype(float)
    odds = np.exp(np.random.default_rng(8).normal(np.where(labels == 1, 2.0, -2.0), 1.0) / 4)  # multilabel, softened
    assert fit_temperature(odds / (1 + odds), labels, multilabel=True) < 0.5


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_each_fold_model_is_calibrated_with_its_own_temperature():
    """Five over-confident fold models that disagree: the average of their test probabilities is softer than any of
    them, so the temperature fitted on (single-model) OOF over-softens it; calibrating each fold model with its own
    temperature and averaging logits does not."""
    rng = np.random.default_rng(0)
    n, k = 2000, 5

    def features(labels):
        return np.eye(3)[labels] * 2.0 + rng.normal(0, 1.0, (len(labels), 3))

    y, hidden = rng.integers(0, 3, n), rng.integers(0, 3, n)
    x, x_test = features(y), features(hidden)
    folds = np.arange(n) % k
    models = [2.0 * (np.eye(3) + rng.normal(0, 0.3, (3, 3))) for _ in range(k)]
    oof = np.empty((n, 3))
    for f, model in enumerate(models):
        oof[folds == f] = _softmax(x[folds == f] @ model)
    tests = [_softmax(x_test @ model) for model in models]
    average = np.mean(tests, axis=0)
    t_oof, t_right = fit_temperature(oof, y), fit_temperature(average, hidden)
    nll = {
        "raw": log_loss(hidden, average),
        "oof_temperature": log_loss(hidden, apply_temperature(average, t_oof)),
        "right_temperature": log_loss(hidden, apply_temperature(average, t_right)),
        "per_fold": log_loss(hidden, calibrate_folds(tests, fold_temperatures(oof, y, folds))),
    }
    print(f"T on OOF {t_oof:.2f}, best T for the averaged test {t_right:.2f}; test NLL", {key: round(v, 3) for key, v in nll.items()})
    assert t_oof > 1 > t_right
    assert nll["oof_temperature"] > nll["raw"] > nll["per_fold"], nll
    multilabel = calibrate_folds([np.array([[0.9, 0.2]]), np.array([[0.1, 0.2]])], [1.0, 2.0], multilabel=True)
    np.testing.assert_allclose(multilabel, 1 / (1 + np.exp(-np.array([[(np.log(9) - np.log(9) / 2) / 2, -np.log(4) * 0.75]]))))
