"""What the command modules share: the logger, JSON options, and common arguments."""

from __future__ import annotations

import argparse
import json
import logging
from typing import TYPE_CHECKING, Any

from medrobust.core.errors import ConfigError

if TYPE_CHECKING:
    import torch

log = logging.getLogger("medrobust")


def parse_json(text: str, flag: str) -> dict[str, Any]:
    """A command-line JSON object, or a ConfigError naming the flag."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{flag}: not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{flag}: expected a JSON object, got {type(value).__name__}")
    return value


def add_device_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                   help="cuda: stop at once, saying why, when the GPU cannot be used; auto: the GPU when it can "
                   "be, else the CPU with a warning saying why")
    s.add_argument("--threads", type=int, required=True)
    s.add_argument("--jobs-per-gpu", type=int, required=True,
                   help="on a machine with several GPUs, claim one of them, shared by at most this many jobs")


def job_device(a: argparse.Namespace) -> torch.device:
    """Use --threads CPU threads; return the --device (medrobust.jobs.device.require_device: a DeviceError
    for cuda without a usable GPU). A GPU job first claims one GPU of those it inherited
    (medrobust.jobs.gpus), before anything starts CUDA, which reads CUDA_VISIBLE_DEVICES once."""
    import torch

    from medrobust.jobs.device import require_device
    from medrobust.jobs.gpus import claim_gpu

    if a.device != "cpu":
        claim_gpu(a.jobs_per_gpu)
    torch.set_num_threads(a.threads)
    return require_device(a.device)


def add_figure_outputs(s: argparse.ArgumentParser) -> None:
    s.add_argument("--out-png", required=True)
    s.add_argument("--out-pdf", required=True)


def add_model_args(s: argparse.ArgumentParser, what: str = "a trained model (medrobust train)") -> None:
    """--model and the epoch whose weights it uses (--weights: the one its stage keeps)."""
    from medrobust.core.stages import EPOCHS

    s.add_argument("--model", required=True, help=what)
    s.add_argument("--weights", choices=EPOCHS, required=True,
                   help="the checkpoint's best epoch (by its method's validation metric) or its last")


def add_inputs_arg(s: argparse.ArgumentParser, what: str) -> None:
    """--inputs: the rule's named inputs (medrobust.core.paths.key -> path), as JSON."""
    s.add_argument("--inputs", required=True, help=f"JSON object {{<dataset>/<stage>/<rep>/<kind>: file}}: {what}")


def add_n_classes_arg(s: argparse.ArgumentParser) -> None:
    s.add_argument("--n-classes", required=True, help="JSON object {dataset: number of classes}")


def stage_inputs(a: argparse.Namespace) -> list[dict[str, Any]]:
    """--inputs by stage (medrobust.core.paths.gather)."""
    from medrobust.core.paths import gather

    return gather(parse_json(a.inputs, "--inputs"))
