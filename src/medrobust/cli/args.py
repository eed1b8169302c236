"""What the command modules share: the logger, JSON options, and common arguments."""

from __future__ import annotations

import argparse
import json
import logging
from typing import TYPE_CHECKING, Any

from medrobust.errors import ConfigError

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
    s.add_argument("--device", default="auto")
    s.add_argument("--threads", type=int, default=2)


def job_device(a: argparse.Namespace) -> torch.device:
    """Use --threads CPU threads; return the --device (auto: the GPU when there is one)."""
    import torch

    from medrobust.runtime import pick_device

    torch.set_num_threads(a.threads)
    return pick_device(a.device)


def add_figure_outputs(s: argparse.ArgumentParser) -> None:
    s.add_argument("--out-png", required=True)
    s.add_argument("--out-pdf", required=True)
