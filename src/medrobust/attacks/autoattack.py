"""AutoAttack (Croce & Hein, 2020) with the authors' implementation (`pyautoattack`), aware of
the number of classes, and resumable batch by batch.

The standard version runs APGD-CE, APGD-T, FAB-T and Square with 9 target classes. It is only
defined for 10 or more classes, so the attack list follows the class count C (`attack_plan`):

- C >= 4: the standard attacks, with min(9, C - 1) target classes for APGD-T and FAB-T
  (PathMNIST, 9 classes: 8 targets; OctMNIST, 4 classes: 3 targets; OrganSMNIST: the standard 9).
- C = 3: the targeted DLR loss needs a fourth-largest logit, so APGD-T is replaced by the
  untargeted APGD-DLR (its loss needs three logits); FAB-T uses the 2 other classes.
  pyautoattack's own check warns about any DLR attack below 4 classes; that warning is
  conservative for the untargeted loss.
- C = 2 (PneumoniaMNIST, BreastMNIST): every DLR loss is undefined; APGD-CE, FAB (untargeted:
  with two classes the only target is the other class) and Square.

The attacks run one after the other on the points still classified correctly, as
`run_standard_evaluation` does; here each attack is a separate call so that the robust accuracy
after every attack is recorded, and each attack is run batch by batch (its batches are the
points still robust at its start, cut into batch_size pieces, as pyautoattack cuts them). The
state, saved after every attack and, on a stop request (SIGTERM, read after every batch),
within one, holds the images and robust flags so far, the finished attacks, and the current
attack's point list and finished batches: an interrupted evaluation resumes at the next batch,
with the same batches, so its results equal an uninterrupted run's. Every attack uses the same
fixed seed, as AutoAttack does, and pyautoattack reseeds every batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from medrobust.core.errors import Interrupted
from medrobust.core.io import atomic_path
from medrobust.jobs.progress import ProgressLog

log = logging.getLogger(__name__)
STANDARD_TARGETS = 9


def attack_plan(n_classes: int) -> tuple[list[str], int]:
    """The attacks to run for `n_classes` classes, and the number of target classes."""
    if n_classes < 2:
        raise ValueError(f"AutoAttack needs at least 2 classes, got {n_classes}")
    targets = min(STANDARD_TARGETS, n_classes - 1)
    if n_classes == 2:
        return ["apgd-ce", "fab", "square"], targets
    if n_classes == 3:
        return ["apgd-ce", "apgd-dlr", "fab-t", "square"], targets
    return ["apgd-ce", "apgd-t", "fab-t", "square"], targets


def build(model: torch.nn.Module, n_classes: int, eps: float, seed: int, device: torch.device) -> Any:
    """pyautoattack's AutoAttack with the standard version's settings and `attack_plan`'s list."""
    from pyautoattack import AutoAttack

    attacks, targets = attack_plan(n_classes)
    aa = AutoAttack(model, norm="Linf", eps=eps, seed=seed, device=device, version="standard")
    aa.attacks_to_run = attacks
    aa.apgd_targeted.n_target_classes = targets
    aa.fab.n_target_classes = targets
    return aa


@dataclass
class Progress:
    """What has been attacked so far; saved after every attack, and within one on a stop request."""

    x_adv: torch.Tensor
    robust: torch.Tensor
    done: dict[str, float] = field(default_factory=dict)  # attack -> robust accuracy after it
    # the attack under way: its name, the points it attacks (those robust at its start; the flags
    # change as its batches finish, so the batches are cut from this list) and its batches done
    attack: str | None = None
    index: torch.Tensor | None = None
    batches_done: int = 0

    def save(self, path: Path) -> None:
        with atomic_path(path) as tmp:
            torch.save({"x_adv": self.x_adv.cpu(), "robust": self.robust.cpu(), "done": self.done,
                        "attack": self.attack, "index": None if self.index is None else self.index.cpu(),
                        "batches_done": self.batches_done}, tmp)

    @classmethod
    def load_or_start(cls, path: Path, x: torch.Tensor, clean_correct: torch.Tensor) -> Progress:
        """The progress saved at `path` (its folder, medrobust.jobs.state.resumable, holds only
        this very job's), else a fresh start."""
        if path.exists():
            saved = torch.load(path, map_location=x.device, weights_only=True)
            within = f" and {saved['batches_done']} batches of {saved['attack']}" if saved["attack"] else ""
            log.info("resuming AutoAttack after %s%s", ", ".join(saved["done"]) or "the clean pass", within)
            return cls(saved["x_adv"].to(x.device), saved["robust"].to(x.device), saved["done"], saved["attack"],
                       saved["index"], saved["batches_done"])
        return cls(x.clone(), clean_correct.clone())

    def begin(self, attack: str) -> torch.Tensor:
        """The points `attack` runs on: those robust now, unless it is the one under way (resumed)."""
        if self.attack != attack or self.index is None:
            self.attack, self.index, self.batches_done = attack, self.robust.nonzero().flatten(), 0
        return self.index

    def finish(self, attack: str) -> None:
        self.done[attack] = self.robust.float().mean().item()
        self.attack, self.index, self.batches_done = None, None, 0


def run(aa: Any, x: torch.Tensor, y: torch.Tensor, state: Path, batch_size: int,
        should_stop: Callable[[], bool] = lambda: False) -> Progress:
    """Run `aa`'s attacks in order on the points that are still robust; resumable from the state
    folder `state` (medrobust.jobs.state.resumable).

    `x` holds float images in [0, 1]. Returns the adversarial images (clean where no attack
    succeeded) and the robust accuracy after each attack. Reads `should_stop()` after every
    batch; when it is true, saves (the batches done so far included) and raises Interrupted.
    """
    with torch.no_grad():
        clean_correct = torch.cat([aa.model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]
                                   for i in range(0, len(x), batch_size)])
    state = state / "progress.pt"
    progress = Progress.load_or_start(state, x, clean_correct)
    for attack in list(aa.attacks_to_run):
        if attack in progress.done:
            continue
        idx = progress.begin(attack)
        aa.attacks_to_run = [attack]
        _attack_batches(aa, x, y, idx, progress, state, batch_size, should_stop)
        progress.finish(attack)
        log.info("robust accuracy after %s: %.4f", attack, progress.done[attack])
        progress.save(state)
        if should_stop():
            raise Interrupted(f"stopped after {attack}; state saved in {state}")
    return progress


def _attack_batches(aa: Any, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, progress: Progress, state: Path,
                    batch_size: int, should_stop: Callable[[], bool]) -> None:
    """The current attack's remaining batches of `idx`, one pyautoattack call each: the same
    batches as one call over all of them (every batch reseeded alike), so the results are the
    same, the log shows progress, and a stop request is honoured after any batch."""
    batches = list(idx.split(batch_size)) if len(idx) else []  # (an empty tensor splits into one empty part)
    kept = sum(len(b) for b in batches[:progress.batches_done])
    meter = ProgressLog(log, f"AutoAttack {progress.attack}", len(idx) - kept)  # this run's work: a true rate and ETA
    for k in range(progress.batches_done, len(batches)):
        b = batches[k]
        x_att, y_att = aa.run_standard_evaluation(x[b], y[b], batch_size=batch_size)
        flipped = y_att.to(y.device) != y[b]
        progress.x_adv[b[flipped]] = x_att[flipped].to(x.device)
        progress.robust[b[flipped]] = False
        progress.batches_done = k + 1
        meter.advance(len(b))
        if k + 1 < len(batches) and should_stop():  # (after the last batch, run() saves the finished attack)
            progress.save(state)
            raise Interrupted(f"stopped in {progress.attack} after batch {k + 1} of {len(batches)}; "
                              f"state saved in {state}")
