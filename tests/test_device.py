"""The device a job runs on: `--device cuda` refuses before any work, with one line per case
saying what to do; `auto` never falls back to the CPU silently; `medrobust doctor` says what
the GPU jobs would find; provenance and resumable states know the device they were made on."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from medrobust.core.errors import ConfigError, Interrupted
from medrobust.core.hparams import defaults
from medrobust.core.splits import load_split
from medrobust.jobs import device as dev
from medrobust.jobs.device import CudaReport, DeviceError, Gpu, diagnose, require_device, runs_on, verdict
from medrobust.jobs.provenance import record
from medrobust.jobs.state import fingerprint, fingerprint_mismatch, resumable
from medrobust.train import loop
from medrobust.train.loop import Data, TrainConfig, fit

from conftest import env_with_venv

CU130 = dict(torch="2.13.0+cu130", cuda="13.0", arch_list=("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"))
V100 = Gpu("Tesla V100-SXM2-32GB", (7, 0), 31.7)
A100 = Gpu("NVIDIA A100-SXM4-80GB", (8, 0), 79.2)
HP = defaults(lr=0.1, batch_size=50, depth=10, width=1, precision="fp32", ema_decay=0.9, epochs=2)
CUDA_USABLE = torch.cuda.is_available()

CASES = {
    "no device": (CudaReport(**CU130), ["no GPU visible", "no /dev/nvidia* device nodes", "--gpus=1", "--device cpu"]),
    "hidden": (CudaReport(**CU130, visible_devices="", device_nodes=True),
               ["CUDA_VISIBLE_DEVICES='' hides every GPU", "unset it", "--gpus=1"]),
    "slurm without gpu": (CudaReport(**CU130, visible_devices="NoDevFiles"), ["CUDA_VISIBLE_DEVICES='NoDevFiles'"]),
    "old driver": (CudaReport(**CU130, driver="550.54.15", driver_cuda=(12, 4), device_nodes=True),
                   ["the NVIDIA driver 550.54.15 supports CUDA up to 12.4, older than this torch build's CUDA 13.0",
                    "install a torch build for CUDA 12 (PyTorch's cu126 wheels) or ask for a newer driver (R580+)"]),
    "volta": (CudaReport(**CU130, available=True, device_count=1, gpus=(V100,), driver_cuda=(13, 0)),
              ["GPU 0 (Tesla V100-SXM2-32GB) has compute capability 7.0 (sm_70)", "no kernels for",
               "install PyTorch's cu126 wheels (CUDA 12.6, sm_50 to sm_90), which support sm_70"]),
    "future gpu": (CudaReport(**CU130, available=True, device_count=1, gpus=(Gpu("B9000", (13, 0)),)),
                   ["sm_130", "install a newer torch build whose arch list has sm_130"]),
    "apptainer without --nv": (CudaReport(**CU130, container="Apptainer"),
                               ["inside this Apptainer container (no /dev/nvidia* device nodes)",
                                "run Apptainer with --nv (snakemake --apptainer-args --nv; the SLURM profile sets it)"]),
    "docker without gpus": (CudaReport(**CU130, container="docker"), ["--gpus all (docker)", "--nv"]),
    "cpu-only build": (CudaReport(torch="2.13.0+cpu", cuda=None), ["CPU-only build"]),
    "cuda broken": (CudaReport(**CU130, device_count=1, device_nodes=True, torch_says="CUDA unknown error"),
                    ["CUDA does not initialise", "CUDA unknown error"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_case_is_one_line_that_says_what_to_do(case: str) -> None:
    report, words = CASES[case]
    why = diagnose(report)
    print(f"{case}: {why}")
    assert why and "\n" not in why and all(w in why for w in words), why
    assert verdict(report) == f"GPU jobs will refuse: {why}"


def test_usable_gpus_are_not_refused() -> None:
    assert diagnose(CudaReport(**CU130, available=True, device_count=1, gpus=(A100,), driver_cuda=(13, 0))) is None
    # a driver of the build's major version runs it (minor version compatibility)
    report = CudaReport(torch="2.8.0+cu128", cuda="12.8", arch_list=("sm_80", "sm_90"), available=True,
                        device_count=2, gpus=(A100, A100), driver_cuda=(12, 4))
    assert verdict(report) == "GPU jobs will run on NVIDIA A100-SXM4-80GB, NVIDIA A100-SXM4-80GB"
    assert runs_on((8, 9), ("sm_80", "sm_86")) and not runs_on((8, 9), ("sm_90",))  # cubins: same major, minor <=
    assert runs_on((12, 1), ("sm_120",)) and runs_on((9, 0), ("sm_80", "compute_90"))  # PTX: no higher
    assert not runs_on((7, 0), CU130["arch_list"]) and A100.bf16 and not V100.bf16


def test_cuda_refuses_an_unsupported_gpu_before_any_work(monkeypatch, caplog) -> None:
    """End to end through what torch reports: a V100 under a CUDA 13 build (no sm_70 kernels)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=None: (7, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=None: V100.name)
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: list(CU130["arch_list"]))
    with pytest.raises(DeviceError) as e:
        require_device("cuda")
    print(e.value)
    assert str(e.value).startswith("--device cuda: GPU 0 (Tesla V100-SXM2-32GB) has compute capability 7.0 (sm_70)")
    assert "cu126" in str(e.value)
    with caplog.at_level(logging.WARNING):
        assert require_device("auto").type == "cpu"
    assert "GPU jobs are running on the CPU" in caplog.text and "sm_70" in caplog.text


@pytest.mark.skipif(CUDA_USABLE, reason="a usable GPU: auto picks it")
def test_auto_falls_back_to_the_cpu_with_the_reason(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        assert require_device("cpu").type == "cpu"
    assert not caplog.text
    with caplog.at_level(logging.WARNING):
        assert require_device("auto").type == "cpu"
    assert f"GPU jobs are running on the CPU (--device auto; --device cuda would stop instead): " \
           f"{diagnose(dev.probe())}" in caplog.text
    with pytest.raises(ConfigError, match="--device: expected cpu, cuda or auto, got 'tpu'"):
        require_device("tpu")


@pytest.mark.skipif(CUDA_USABLE, reason="a usable GPU: --device cuda runs")
def test_cuda_without_a_gpu_is_one_line_and_exit_2(checkpoint: Path, prepared_small: Path, tmp_path: Path) -> None:
    done = subprocess.run(["medrobust", "evaluate", "--model", str(checkpoint), "--weights", "best",
                           "--data", str(prepared_small),
                           "--out", str(tmp_path / "e.json"), "--device", "cuda", "--threads", "1", "--jobs-per-gpu", "1"],
                          capture_output=True, text=True, env=env_with_venv(), timeout=300)
    print(done.stderr)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and errors[0].endswith(f"--device cuda: {diagnose(dev.probe())}"), done.stderr
    assert not (tmp_path / "e.json").exists()


def test_doctor_says_what_gpu_jobs_would_find() -> None:
    done = subprocess.run(["medrobust", "doctor"], capture_output=True, text=True, env=env_with_venv(), timeout=300)
    print(done.stdout)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"CUDA {torch.version.cuda}" in done.stdout and "arch list:" in done.stdout and "MagickWand" in done.stdout
    last = done.stdout.splitlines()[-1]
    assert last.startswith("GPU jobs will run on" if CUDA_USABLE else "GPU jobs will refuse: "), last


def test_provenance_names_the_device_only_when_torch_is_loaded() -> None:
    facts = record()["device"]
    assert facts["cuda"] == torch.version.cuda and facts["float32_matmul_precision"] in ("highest", "high", "medium")
    assert {"gpus", "driver", "cudnn", "tf32_matmul", "tf32_cudnn", "cudnn_benchmark"} <= set(facts)
    json.dumps(facts)
    light = subprocess.run([sys.executable, "-c", "import sys; from medrobust.jobs.provenance import record; "
                            "r = record(); print('torch' in sys.modules, 'device' in r)"],
                           capture_output=True, text=True, timeout=120)
    assert light.stdout.split() == ["False", "False"], light.stderr[-2000:]


def test_fingerprints_know_the_device_and_precision(prepared_small: Path) -> None:
    gpu = fingerprint("train", HP, prepared_small, device="cuda", precision="bf16")
    cpu = fingerprint("train", HP, prepared_small, device="cpu", precision="fp32")
    assert gpu["device"] == "cuda/bf16" and {k: v for k, v in gpu.items() if k != "device"} == \
        fingerprint("train", HP, prepared_small)  # old callers: no device key, nothing compared
    assert fingerprint_mismatch(gpu, cpu) == \
        "it was written by another kind of device or precision (was cuda/bf16, now cpu/fp32)"
    assert fingerprint_mismatch(gpu, gpu) is None


def _train_args(data: Path, out: Path) -> list[str]:
    return ["medrobust", "train", "--train-data", str(data), "--val-data", str(data), "--n-classes", "4",
            "--hparams", json.dumps(HP), "--state", str(out / "state"), "--out-model", str(out / "model.pt"),
            "--out-metrics", str(out / "metrics.json"), "--out-history", str(out / "history.csv"),
            "--checkpoint-every", "5", "--eval-batch-size", "1024", "--threads", "1", "--device", "cpu",
            "--jobs-per-gpu", "1"]


def _data(path: Path) -> Data:
    cpu = torch.device("cpu")
    return Data(*load_split(path, "train", cpu, 4), *load_split(path, "val", cpu, 4), 4)


def test_a_state_from_a_gpu_in_bf16_is_not_resumed_on_the_cpu(prepared_small: Path, tmp_path: Path) -> None:
    """A state half-trained on a GPU in bf16 (this very code, settings and data) starts afresh
    on the CPU in fp32, and the log says why."""
    gpu = fingerprint("train", {**HP, "n_classes": 4}, prepared_small, prepared_small, device="cuda", precision="bf16")
    with pytest.raises(Interrupted), resumable(tmp_path / "state", gpu, "training state") as state:
        fit(TrainConfig.from_dict(HP), _data(prepared_small), state, lambda: True)
    done = subprocess.run(_train_args(prepared_small, tmp_path), capture_output=True, text=True,
                          env=env_with_venv(), timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (f"discarding the training state in {tmp_path / 'state'}: it was written by another kind of device or "
            "precision (was cuda/bf16, now cpu/fp32)") in done.stderr, done.stderr[-2000:]
    assert "resumed from" not in done.stderr


def test_another_gpu_model_is_logged_and_resumed(prepared_small: Path, tmp_path: Path, monkeypatch, caplog) -> None:
    cfg, data, state = TrainConfig.from_dict(HP), _data(prepared_small), tmp_path / "state"
    monkeypatch.setattr(loop, "gpu_name", lambda device: V100.name)
    with pytest.raises(Interrupted):
        fit(cfg, data, state, lambda: True)
    monkeypatch.setattr(loop, "gpu_name", lambda device: A100.name)
    with caplog.at_level(logging.INFO):
        fit(cfg, data, state)
    assert f"another GPU model (was {V100.name}, now {A100.name})" in caplog.text and "resumed from" in caplog.text
