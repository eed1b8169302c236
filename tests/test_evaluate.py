"""Evaluation on corrupted test sets: metrics on a known case, and the averaging order."""

from pathlib import Path

import numpy as np
import pytest
import torch

from medrobust.core.errors import DataError
from medrobust.core.io import read_npz, write_npz
from medrobust.evaluate.clean import evaluate
from medrobust.evaluate.corrupted import evaluate_corrupted


def test_corruption_metrics_on_a_known_case(checkpoint: Path, prepared_medium: Path, tmp_path: Path) -> None:
    """'identity' repeats the clean test images at every severity, so its metrics are the clean
    ones; 'blank' makes every image the same, so the model gives one answer for all of them:
    balanced accuracy exactly 1/C and AUC exactly 0.5. The mean is over severities, then over
    corruptions."""
    test = read_npz(prepared_medium, ("test_images", "test_labels"))
    images, labels = test["test_images"], test["test_labels"].reshape(-1)
    blank = np.zeros_like(images)
    half = images.copy()
    half[: len(half) // 2] = 0  # severities differ: 1-4 clean, 5 half blank
    write_npz(tmp_path / "c.npz", {"labels": labels,
                                   "corruption/identity": np.stack([images] * 5),
                                   "corruption/blank": np.stack([blank] * 5),
                                   "corruption/mixed": np.stack([images] * 4 + [half])})
    clean, clean_probs = evaluate(checkpoint, "best", prepared_medium, "test", torch.device("cpu"))
    out, probs = evaluate_corrupted(checkpoint, "best", tmp_path / "c.npz", torch.device("cpu"))
    # the per-image probabilities behind every number: (corruptions, severities, N, C), sorted names
    assert probs["probs"].shape == (3, 5, len(labels), 4) and probs["probs"].dtype == np.float32
    assert list(probs["corruptions"]) == ["blank", "identity", "mixed"]
    assert np.array_equal(probs["probs"][1, 0], clean_probs["probs"]) and np.array_equal(probs["labels"], labels)
    assert out["n"] == len(labels) and set(out["by_corruption"]) == {"identity", "blank", "mixed"}
    for key in ("balanced_accuracy", "auc", "accuracy"):
        assert out["by_corruption"]["identity"][key] == pytest.approx(clean[key])
    assert out["by_corruption"]["blank"]["balanced_accuracy"] == pytest.approx(0.25)
    assert out["by_corruption"]["blank"]["auc"] == pytest.approx(0.5)
    mixed = [m["balanced_accuracy"] for m in out["by_severity"]["mixed"]]
    assert mixed[:4] == [pytest.approx(clean["balanced_accuracy"])] * 4 and mixed[4] < mixed[0]
    assert out["by_corruption"]["mixed"]["balanced_accuracy"] == pytest.approx(np.mean(mixed))
    assert out["mean"]["balanced_accuracy"] == pytest.approx(
        np.mean([out["by_corruption"][n]["balanced_accuracy"] for n in ("identity", "blank", "mixed")]))


def test_a_file_without_corruptions_is_rejected_by_name(checkpoint: Path, prepared_medium: Path) -> None:
    with pytest.raises(DataError, match="prepared.npz: not a corrupted test set"):
        evaluate_corrupted(checkpoint, "best", prepared_medium, torch.device("cpu"))


def test_clean_evaluation_counts_the_predicted_classes(prepared_small: Path, tmp_path: Path) -> None:
    """A model whose last layer always favours class 2 assigns every test image to it; the
    counts say so, and the metrics are those of a constant prediction (balanced accuracy 1/C)."""
    from medrobust.core.network import build

    args = {"depth": 10, "width": 1, "n_classes": 4, "n_channels": 1, "mean": [0.5], "std": [0.25]}
    model = build(**args)
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.copy_(torch.tensor([0.0, 0.0, 1.0, 0.0]))
    torch.save({"model_args": args, "state_dict": model.state_dict(), "hparams": {"precision": "fp32"}},
               tmp_path / "one_class.pt")
    out, probs = evaluate(tmp_path / "one_class.pt", "best", prepared_small, "test", torch.device("cpu"))
    assert probs["probs"].shape == (100, 4) and (probs["probs"].argmax(1) == 2).all()
    assert out["predicted_class_counts"] == [0, 0, out["n"], 0] and out["n"] == 100
    assert out["balanced_accuracy"] == pytest.approx(0.25) and out["auc"] == pytest.approx(0.5)
    assert set(out) == {"balanced_accuracy", "auc", "accuracy", "n", "predicted_class_counts"}
