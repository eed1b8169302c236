#!/usr/bin/env bash
# The checks a first GPU node must pass, in about 3 minutes on one H200, with no network. Run
# from the repository root after ./run.sh has made .venv:   bash bench/first_gpu.sh
# It first ran on an H200 on 2026-12-04 (docs/benchmarks.md, bench/logs/); every line it prints is a
# measurement to put in the README (throughputs under `compute` in config.yaml) or a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
MR=${MR:-.venv/bin/medrobust}
# a relative path works from bench/ too; a bare name (python3) is looked up on PATH
case $PY in /*) ;; */*) PY=$PWD/$PY ;; esac
case $MR in /*) ;; */*) MR=$PWD/$MR ;; esac
WORK=$(mktemp -d)
# LOGS=<file>: the logs of every step's commands, kept there when the script ends
trap '[ -z "${LOGS:-}" ] || tail -n +1 "$WORK"/*.log > "$LOGS"; rm -rf "$WORK"' EXIT
step() { printf '\n=== %s\n' "$*"; }

step "1. what this node offers (medrobust doctor)"
"$MR" doctor

step "2. refusal: a GPU job that sees no GPU stops with one line, exit 2"
"$MR" synthesize --spec '{"n_classes": 2, "n_train": 2048, "n_val": 256, "n_test": 256}' --size 64 \
    --out "$WORK/s.npz" 2>/dev/null
"$MR" prepare --source "$WORK/s.npz" --n-classes 2 --n-channels 1 --source-size 64 --size 32 \
    --out "$WORK/p.npz" --stats "$WORK/p.json" 2>/dev/null
# every other setting at the schema's defaults (bf16 on the GPU)
HP=$("$PY" -c 'import json; from medrobust.core.hparams import defaults
print(json.dumps(defaults(lr=0.1, batch_size=128, epochs=3, augment=True, width=1)))')
train() {  # train <device> <out dir> [extra env...]
    mkdir -p "$2"
    "$MR" train --device "$1" --jobs-per-gpu 1 --threads 2 --train-data "$WORK/p.npz" --val-data "$WORK/p.npz" \
        --n-classes 2 --hparams "$HP" --checkpoint-every 5 --eval-batch-size 1024 --state "$2/state" \
        --out-model "$2/model.pt" --out-metrics "$2/metrics.json" --out-history "$2/h.csv"
}
set +e
CUDA_VISIBLE_DEVICES= train cuda "$WORK/refused" 2> "$WORK/refused.log"
rc=$?
set -e
echo "exit code $rc (want 2): $(grep ERROR "$WORK/refused.log" | tail -1)"
[ "$rc" = 2 ] || { echo "FAIL: the refusal"; exit 1; }

step "3. a real training on the GPU (bf16), its provenance"
train cuda "$WORK/gpu" 2> "$WORK/gpu.log"
tail -1 "$WORK/gpu.log"
"$PY" -c 'import json, sys; m = json.load(open(sys.argv[1])); print("device:", m["device"], m["precision"]); print(json.dumps(m["provenance"].get("device"), indent=1))' "$WORK/gpu/metrics.json"

step "4. claiming: one GPU per concurrent job (the GPUs here, or 1)"
N=$("$PY" -c 'import torch; print(max(1, min(4, torch.cuda.device_count())))')
for i in $(seq "$N"); do
    MEDROBUST_GPU_LOCK_DIR="$WORK/locks" "$PY" -c 'import time; from medrobust.jobs.gpus import claim_gpu
c = claim_gpu(1, timeout=60); print(c.device, flush=True); time.sleep(5)' > "$WORK/claim$i.txt" &
done
wait
echo "claimed: $(cat "$WORK"/claim*.txt | sort | tr '\n' ' ') (want $N distinct)"
[ "$(cat "$WORK"/claim*.txt | sort -u | wc -l)" = "$N" ] || { echo "FAIL: two jobs claimed one GPU"; exit 1; }

step "5. precision: the stem and the logits' response to the construction's perturbations, bf16 vs fp32"
tests=passed  # a failing test is reported here and again at the end; the measurements below still run
"$PY" -m pytest -q -rfEs tests/test_precision.py tests/test_sync.py tests/test_device.py -p no:cacheprovider \
    > "$WORK/tests.log" 2>&1 || tests=FAILED
grep -E '^(FAILED|ERROR|SKIPPED)|passed|failed' "$WORK/tests.log" | tail -25
(cd bench && "$PY" precision.py --device cuda --model "$WORK/gpu/model.pt" --data "$WORK/p.npz" --steps 100 --batch-size 512)
(cd bench && "$PY" precision.py --device cuda --model "$WORK/gpu/model.pt" --data "$WORK/p.npz" --steps 100 --batch-size 512 --width 8)

step "6. no host synchronisation inside training, TRADES and PGD steps (sync debug mode: error)"
(cd bench && "$PY" sync_check.py --device cuda --width 8)

step "7. throughputs (put them under compute: in config.yaml) and their share of the GPU's bf16 peak"
cd bench
"$PY" train_throughput.py --device cuda --width 8 --batch-size 512 --max-batches 50 | tee "$WORK/train.txt"
"$PY" pgd_throughput.py --device cuda --model "$WORK/gpu/model.pt" --data "$WORK/p.npz" --width 8 --batch-size 512 \
    --steps 100 --repeats 2 | tee "$WORK/pgd.txt"
"$PY" trades_throughput.py --device cuda --width 8 --batches 10 | tee "$WORK/trades.txt"
ips=$(awk '/^ours/ {print $(NF-1); exit}' "$WORK/train.txt")
"$PY" gpu_peak.py --width 8 --images-per-second "$ips" --passes 3
steps=$(awk '/^ours/ {print $2; exit}' "$WORK/pgd.txt")
"$PY" gpu_peak.py --width 8 --images-per-second "$steps" --passes 2
cd ..

step "8. the evaluation's own commands on the GPU: clean evaluation (against the CPU's) and AutoAttack"
evaluate() {  # evaluate <device> <out>
    "$MR" evaluate --model "$WORK/gpu/model.pt" --weights best --data "$WORK/p.npz" --split test --out "$2" \
        --device "$1" --threads 2 --jobs-per-gpu 1 2>> "$WORK/eval.log"
}
evaluate cuda "$WORK/eval_gpu.json"
evaluate cpu "$WORK/eval_cpu.json"
"$PY" -c 'import json, sys; g, c = (json.load(open(f)) for f in sys.argv[1:])
print("clean test metrics, GPU vs CPU:", {k: (g["metrics"][k], c["metrics"][k]) for k in g["metrics"]})' \
    "$WORK/eval_gpu.json" "$WORK/eval_cpu.json"
start=$(date +%s%N)
"$MR" autoattack --model "$WORK/gpu/model.pt" --weights best --data "$WORK/p.npz" --split test --eps 4 \
    --n-images 256 --seed 0 --batch-size 256 --state "$WORK/aa_state" --out "$WORK/aa.json" --device cuda \
    --threads 2 --jobs-per-gpu 1 2> "$WORK/aa.log" || { tail -5 "$WORK/aa.log"; echo "FAIL: AutoAttack"; exit 1; }
echo "AutoAttack, 256 images (WRN-16-1, 3 epochs): $(( ($(date +%s%N) - start) / 1000000 )) ms wall"
"$PY" -c 'import json, sys; a = json.load(open(sys.argv[1]))
print({k: a[k] for k in ("precision", "linf_max_255", "clean_metrics", "metrics", "robust_accuracy_after")})' "$WORK/aa.json"

echo
[ "$tests" = passed ] || { echo "FAIL: the GPU tests of step 5 (above)"; exit 1; }
echo "first_gpu.sh: all checks passed; compute.train_images_per_second ~ $ips (WRN-16-8, training)"
