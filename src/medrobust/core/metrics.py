"""Balanced accuracy and macro one-vs-rest AUC, the study's two metrics, from pinned libraries.

Balanced accuracy is scikit-learn's `balanced_accuracy_score`. The AUC of one class is the
Mann-Whitney U statistic of its scores divided by n_pos * n_neg (scipy.stats.mannwhitneyu,
average ranks for ties): the exact value that scikit-learn's `roc_auc_score` approximates by a
trapezoidal sum, which differs from it in the last bit (at most 2.2e-16) for about a quarter of
random inputs. The macro average over classes, and the positive class's score for two classes,
follow `roc_auc_score(y, probs, multi_class="ovr", average="macro")`; the tests compare the two.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import mannwhitneyu
from sklearn.metrics import balanced_accuracy_score


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the classes present in y_true (classes only predicted are ignored)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return float(balanced_accuracy_score(np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()))


def _binary_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC of `score` for the samples marked `positive`: U / (n_pos * n_neg)."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC is undefined when only one class is present")
    u = mannwhitneyu(score[positive], score[~positive], method="asymptotic").statistic
    return float(u / (n_pos * n_neg))


def macro_auc(y_true: np.ndarray, probs: np.ndarray) -> float:
    """sklearn.metrics.roc_auc_score(y, probs, multi_class='ovr', average='macro');
    for two classes, the AUC of the positive class's score, as scikit-learn (and MedMNIST) do."""
    y_true, probs = np.asarray(y_true).ravel(), np.asarray(probs, dtype=np.float64)
    if probs.shape[1] == 2:
        return _binary_auc(y_true == 1, probs[:, 1])
    return float(np.mean([_binary_auc(y_true == c, probs[:, c]) for c in range(probs.shape[1])]))


def classification_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """The study's two metrics plus plain accuracy, from class probabilities."""
    y_pred = probs.argmax(1)
    try:
        auc = macro_auc(y_true, probs)
    except ValueError:  # a class absent from y_true: AUC undefined, reported as NaN
        auc = float("nan")
    return {
        "balanced_accuracy": balanced_accuracy(y_true, y_pred),
        "auc": auc,
        "accuracy": float(np.mean(y_pred == np.asarray(y_true).ravel())),
    }
