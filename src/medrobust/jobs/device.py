"""The device a job runs on, and why it is not the GPU.

A job asked to run on CUDA (`--device cuda`) that cannot have it stops before any work with one
line saying which case it is and what to do: no GPU visible, a driver older than the CUDA of
this torch build, a GPU architecture the build has no kernels for, or a container started
without GPU access. `--device auto` falls back to the CPU, but says so in a warning: a GPU job
training silently on the CPU for weeks and exiting 0 is the failure this module exists for.

The diagnosis is a pure function of a CudaReport, the few facts torch and the system report
(built by `probe`), so that every case can be tested without a GPU. Torch is imported inside
the functions that need it, so that light commands can import this module cheaply.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import re
import shutil
import subprocess
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from medrobust.core.errors import ConfigError, DataError

if TYPE_CHECKING:
    import torch

log = logging.getLogger("medrobust")
T = TypeVar("T")

# CUDA_VISIBLE_DEVICES values that hide every GPU (SLURM sets NoDevFiles in a job without GPUs)
HIDING = {"", "-1", "NoDevFiles"}
# the oldest driver branch of each CUDA major version
MIN_DRIVER = {13: "R580", 12: "R525", 11: "R450"}
# PyTorch's wheels to install for a driver of that CUDA major version
WHEELS = {12: "PyTorch's cu126 wheels", 11: "PyTorch's cu118 wheels, up to torch 2.7"}
# CUDA 12.8+ and 13 builds dropped Maxwell, Pascal and Volta; cu126 is the newest that has them
LEGACY = "PyTorch's cu126 wheels (CUDA 12.6, sm_50 to sm_90)"
NV_FIX = "run Apptainer with --nv (snakemake --apptainer-args --nv; the SLURM profile sets it)"
OCI_FIX = ("start it with --gpus all (docker) or --device nvidia.com/gpu=all (podman), or under Apptainer "
           "with --nv (snakemake --apptainer-args --nv; the SLURM profile sets it)")
CONTAINER_FIX = {"Apptainer": NV_FIX, "docker": OCI_FIX, "podman": OCI_FIX}
ASK = "ask SLURM for a GPU (--gpus=1; the SLURM profile does for the GPU rules) or run with --device cpu"


class DeviceError(DataError):
    """--device cuda cannot be had on this machine; the message says why and what to do."""


@dataclass(frozen=True)
class Gpu:
    name: str
    capability: tuple[int, int]
    memory_gib: float | None = None

    @property
    def bf16(self) -> bool:
        return self.capability >= (8, 0)  # Ampere and newer compute in bf16 natively


@dataclass(frozen=True)
class CudaReport:
    """What torch and the system say about CUDA here; every field a plain value."""
    torch: str  # torch.__version__
    cuda: str | None  # the CUDA version torch was built for; None: a CPU-only build
    arch_list: tuple[str, ...] = ()  # the GPU architectures it has kernels for (sm_XY, compute_XY)
    available: bool = False  # torch.cuda.is_available()
    device_count: int = 0
    gpus: tuple[Gpu, ...] = ()
    driver: str | None = None  # the driver's release, e.g. "550.54.15"
    driver_cuda: tuple[int, int] | None = None  # the newest CUDA version the driver supports
    visible_devices: str | None = None  # CUDA_VISIBLE_DEVICES; None when unset
    slurm_gpus: str | None = None  # SLURM_JOB_GPUS; None when unset
    container: str | None = None  # "Apptainer", "podman", "docker"; None outside one
    device_nodes: bool = False  # whether /dev/nvidia* exist
    torch_says: str | None = None  # the first line of torch's warning when CUDA did not initialise
    cudnn: int | None = None


def version_tuple(text: str | None) -> tuple[int, int] | None:
    m = re.match(r"(\d+)\.(\d+)", text or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def arch_capability(arch: str) -> tuple[str, tuple[int, int]] | None:
    """("sm" or "compute", (major, minor)) of an arch list entry: sm_120 -> ("sm", (12, 0))."""
    m = re.fullmatch(r"(sm|compute)_(\d+)(\d)[a-z]?", arch)
    return (m.group(1), (int(m.group(2)), int(m.group(3)))) if m else None


def runs_on(capability: tuple[int, int], arch_list: tuple[str, ...]) -> bool:
    """Whether a build has kernels for a GPU: a cubin of the same major and no higher minor
    (binary compatible), or PTX of no higher capability (compiled by the driver)."""
    for kind, (major, minor) in filter(None, map(arch_capability, arch_list)):
        if (kind == "sm" and major == capability[0] and minor <= capability[1]) or \
                (kind == "compute" and (major, minor) <= capability):
            return True
    return False


def too_old_driver(r: CudaReport) -> str | None:
    need = version_tuple(r.cuda)
    have = r.driver_cuda
    # a driver of the same major version runs newer minor versions' code (minor version compatibility)
    if need is None or have is None or have >= need or (r.available and have[0] == need[0]):
        return None
    driver = f"the NVIDIA driver {r.driver}" if r.driver else "the NVIDIA driver"
    instead = f"install a torch build for CUDA {have[0]} ({WHEELS[have[0]]})" if have[0] in WHEELS \
        else f"install a torch build for CUDA {have[0]}.{have[1]}"
    newer = f" ({MIN_DRIVER[need[0]]}+)" if need[0] in MIN_DRIVER else ""
    return (f"{driver} supports CUDA up to {have[0]}.{have[1]}, older than this torch build's CUDA {r.cuda} "
            f"(torch {r.torch}): {instead} or ask for a newer driver{newer}")


def unsupported_gpu(r: CudaReport) -> str | None:
    known = [cap for _, cap in filter(None, map(arch_capability, r.arch_list))]
    for i, gpu in enumerate(r.gpus):
        if not known or runs_on(gpu.capability, r.arch_list):
            continue
        sm = "sm_%d%d" % gpu.capability
        if gpu.capability > max(known):
            fix = f"install a newer torch build whose arch list has {sm}"
        elif gpu.capability >= (5, 0):
            fix = f"install {LEGACY}, which support {sm}, or ask for a newer GPU"
        else:
            fix = "no current torch build supports it: ask for a newer GPU"
        return (f"GPU {i} ({gpu.name}) has compute capability {gpu.capability[0]}.{gpu.capability[1]} ({sm}), "
                f"which this torch build ({r.torch}) has no kernels for (it has {' '.join(r.arch_list)}): {fix}")
    return None


def nothing_visible(r: CudaReport) -> str | None:
    if r.device_count > 0:
        return None
    if r.visible_devices is not None and r.visible_devices.strip() in HIDING:
        return f"no GPU visible: CUDA_VISIBLE_DEVICES={r.visible_devices!r} hides every GPU: unset it, or {ASK}"
    if r.container and not r.device_nodes:
        return (f"no GPU visible inside this {r.container} container (no /dev/nvidia* device nodes): "
                f"{CONTAINER_FIX[r.container]}")
    seen = "/dev/nvidia* exist but torch sees no CUDA device" if r.device_nodes else "no /dev/nvidia* device nodes"
    said = f"; torch says: {r.torch_says}" if r.torch_says else ""
    return f"no GPU visible ({seen}{said}): {ASK}"


def diagnose(r: CudaReport) -> str | None:
    """Why CUDA cannot be used here, as one line saying what to do; None when it can."""
    if r.cuda is None:
        return f"torch {r.torch} is a CPU-only build: install a CUDA build of torch (e.g. PyTorch's cu126 wheels)"
    for check in (too_old_driver, unsupported_gpu, nothing_visible):
        why = check(r)
        if why:
            return why
    if not r.available:
        return f"CUDA does not initialise with torch {r.torch}: {r.torch_says or 'torch.cuda.is_available() is False'}"
    return None


def verdict(r: CudaReport) -> str:
    why = diagnose(r)
    return f"GPU jobs will refuse: {why}" if why else f"GPU jobs will run on {', '.join(g.name for g in r.gpus)}"


def describe(r: CudaReport) -> list[str]:
    """The report as lines for people (medrobust doctor)."""
    driver = r.driver or "none found"
    if r.driver_cuda:
        driver += f" (supports CUDA up to {r.driver_cuda[0]}.{r.driver_cuda[1]})"
    gpus = [f"GPU {i}: {g.name}, {'?' if g.memory_gib is None else f'{g.memory_gib:.1f}'} GiB, compute capability "
            f"{g.capability[0]}.{g.capability[1]}, bf16 {'yes' if g.bf16 else 'no'}" for i, g in enumerate(r.gpus)]
    container = "none" if r.container is None else \
        f"{r.container} ({'with' if r.device_nodes else 'no'} /dev/nvidia* device nodes)"
    return [f"torch: {r.torch} (CUDA {r.cuda or 'none: a CPU-only build'}, cuDNN {r.cudnn or 'none'})",
            f"arch list: {' '.join(r.arch_list) or 'none'}",
            f"driver: {driver}",
            *(gpus or [f"GPUs: none visible (torch sees {r.device_count})"]),
            f"CUDA_VISIBLE_DEVICES: {'(unset)' if r.visible_devices is None else repr(r.visible_devices)}",
            *([f"SLURM_JOB_GPUS: {r.slurm_gpus}"] if r.slurm_gpus is not None else []),
            f"container: {container}"]


def quietly(fn: Callable[[], T], default: T) -> T:
    """fn(), or `default` when it raises: a probe must diagnose a broken CUDA, not die of it."""
    try:
        return fn()
    except Exception:
        return default


def probe() -> CudaReport:
    """What torch and the system report about CUDA (initialises CUDA when a GPU is usable)."""
    import torch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        available = quietly(torch.cuda.is_available, False)
        count = quietly(torch.cuda.device_count, 0)
        gpus = tuple(filter(None, (describe_gpu(i) for i in range(count)))) if available else ()
    said = next((str(w.message).strip().splitlines()[0] for w in caught if str(w.message).strip()), None)
    return CudaReport(torch=torch.__version__, cuda=torch.version.cuda,
                      arch_list=tuple(quietly(torch.cuda.get_arch_list, [])), available=available,
                      device_count=count, gpus=gpus, driver=driver_release(), driver_cuda=driver_cuda(),
                      visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
                      slurm_gpus=os.environ.get("SLURM_JOB_GPUS"), container=container(),
                      device_nodes=any(Path("/dev").glob("nvidia*")), torch_says=said,
                      cudnn=quietly(torch.backends.cudnn.version, None))


def describe_gpu(i: int) -> Gpu | None:
    import torch

    def memory() -> float:
        return torch.cuda.get_device_properties(i).total_memory / 2**30

    capability = quietly(lambda: tuple(torch.cuda.get_device_capability(i)), None)
    if capability is None:
        return None
    return Gpu(quietly(lambda: torch.cuda.get_device_name(i), f"GPU {i}"), capability, quietly(memory, None))


def driver_cuda() -> tuple[int, int] | None:
    """The newest CUDA version the driver supports (nvidia-smi's "CUDA Version"), asked of the
    driver library itself: it answers even when the driver is too old for torch to start CUDA."""
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
            version = ctypes.c_int(0)
            if lib.cuDriverGetVersion(ctypes.byref(version)) == 0 and version.value > 0:
                return version.value // 1000, version.value % 1000 // 10
        except (OSError, AttributeError):
            continue
    return None


@functools.lru_cache(maxsize=1)
def driver_release() -> str | None:
    """The driver's release (e.g. 550.54.15): from the kernel module, else from nvidia-smi."""
    try:
        m = re.search(r"NVRM version:.*?\s(\d+\.\d+(?:\.\d+)?)\s", Path("/proc/driver/nvidia/version").read_text())
        if m:
            return m.group(1)
    except OSError:
        pass
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        done = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.split()
    return lines[0] if done.returncode == 0 and lines else None


def container() -> str | None:
    if os.environ.get("APPTAINER_CONTAINER") or os.environ.get("SINGULARITY_CONTAINER") \
            or Path("/.singularity.d").exists():
        return "Apptainer"
    if Path("/run/.containerenv").exists():
        return "podman"
    return "docker" if Path("/.dockerenv").exists() else None


def require_device(name: str) -> torch.device:
    """The device of `--device`: "cpu"; "cuda", or DeviceError (one line) before any work when it
    cannot be had; "auto", CUDA when usable, else the CPU with a warning saying why."""
    import torch

    if name == "cpu":
        return torch.device("cpu")
    if name not in ("cuda", "auto"):
        raise ConfigError(f"--device: expected cpu, cuda or auto, got {name!r}")
    why = diagnose(probe())
    if why is None:
        return torch.device("cuda")
    if name == "cuda":
        raise DeviceError(f"--device cuda: {why}")
    log.warning("GPU jobs are running on the CPU (--device auto; --device cuda would stop instead): %s", why)
    return torch.device("cpu")


def gpu_name(device: torch.device) -> str | None:
    """The GPU model behind `device`; None for the CPU."""
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else None


def in_use() -> dict[str, Any]:
    """This process's device facts for provenance: GPUs (only when it started CUDA), driver,
    CUDA and cuDNN versions, and the settings that change float32 results (TF32, autotuning)."""
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] \
        if torch.cuda.is_initialized() else []
    return {"gpus": gpus, "driver": driver_release() if gpus else None, "cuda": torch.version.cuda,
            "cudnn": quietly(torch.backends.cudnn.version, None),
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "tf32_cudnn": torch.backends.cudnn.allow_tf32,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "float32_matmul_precision": torch.get_float32_matmul_precision()}
