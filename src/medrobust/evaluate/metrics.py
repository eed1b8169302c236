"""Balanced accuracy and macro one-vs-rest AUC, defined exactly as scikit-learn defines them.

Plain numpy, so evaluation needs no scikit-learn; the tests check equality with it.
"""

from __future__ import annotations

import numpy as np


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the classes present in y_true (sklearn.metrics.balanced_accuracy_score)."""
    y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    classes = np.unique(y_true)
    recalls = [np.mean(y_pred[y_true == c] == c) for c in classes]
    return float(np.mean(recalls))


def _binary_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney U / (n_pos * n_neg) with average ranks for ties (= ROC AUC)."""
    _, tie_group, counts = np.unique(score, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[tie_group]  # average rank of each tie group
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC is undefined when only one class is present")
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


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
