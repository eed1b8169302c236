import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from medrobust.core.metrics import balanced_accuracy, classification_metrics, macro_auc


def _probs(rng: np.random.Generator, n: int, c: int, ties: bool) -> np.ndarray:
    logits = rng.normal(size=(n, c))
    if ties:  # coarse scores produce many ties, which AUC must average like scikit-learn
        logits = np.round(logits, 0)
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True)


@pytest.mark.parametrize("c", [2, 3, 4, 9, 11])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_scikit_learn(c: int, ties: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, 300)
    y[:c] = np.arange(c)  # every class present
    p = _probs(rng, 300, c, ties)
    assert balanced_accuracy(y, p.argmax(1)) == pytest.approx(balanced_accuracy_score(y, p.argmax(1)), abs=1e-12)
    want = roc_auc_score(y, p[:, 1]) if c == 2 else roc_auc_score(y, p, multi_class="ovr", average="macro")
    assert macro_auc(y, p) == pytest.approx(want, abs=1e-12)


def test_balanced_accuracy_ignores_classes_only_predicted() -> None:
    y, pred = np.array([0, 0, 1, 1]), np.array([0, 2, 1, 1])
    with pytest.warns(UserWarning):
        want = balanced_accuracy_score(y, pred)
    assert balanced_accuracy(y, pred) == pytest.approx(want)


def test_auc_undefined_for_missing_class_is_nan_in_summary() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.full((4, 3), 1 / 3)
    with pytest.raises(ValueError):
        macro_auc(y, p)
    assert np.isnan(classification_metrics(y, p)["auc"])


def test_perfect_and_inverted_scores() -> None:
    y = np.array([0, 1, 0, 1])
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]])
    assert macro_auc(y, p) == 1.0
    assert macro_auc(y, p[:, ::-1]) == 0.0
