#!/usr/bin/env bash
# The pipeline's own GPU jobs, timed end to end (start-up, validation, checkpoints included), on
# PneumoniaMNIST-sized synthetic data (4,708 / 524 / 624 grey images) with config.yaml's settings
# (WRN-16-8, its first grid point, fewer epochs), for `medrobust estimate`'s compute: keys.
# After ./run.sh has made .venv, on a GPU node:   bash bench/gpu_jobs.sh   (about 5 minutes)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
MR=${MR:-.venv/bin/medrobust}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
GPU=(--device cuda --threads 4 --jobs-per-gpu 1)
t0() { T=$(date +%s%N); }
t1() { echo "TIME $1: $(( ($(date +%s%N) - T) / 1000000 )) ms"; }
"$PY" - "$W" <<'PY'
import json, sys
from medrobust.core import config, hparams
cfg, w = config.load("config.yaml"), sys.argv[1]
for stage, name, epochs in (("base", "base", 20), ("robust_eps4", "trades", 3)):
    hp = hparams.train_hparams(cfg, "pneumoniamnist", stage, next(iter(hparams.grid_points(cfg, "pneumoniamnist", stage))))
    json.dump({**hp, "epochs": epochs}, open(f"{w}/hp_{name}.json", "w"))
json.dump(hparams.construction_settings(cfg, 4, 0), open(f"{w}/construct.json", "w"))
PY
"$MR" synthesize --spec '{"n_classes": 2, "n_train": 4708, "n_val": 524, "n_test": 624}' --size 64 --out "$W/s.npz" 2>/dev/null
"$MR" prepare --source "$W/s.npz" --n-classes 2 --n-channels 1 --source-size 64 --size 32 --out "$W/p.npz" \
    --stats "$W/p.json" 2>/dev/null
"$MR" synthesize --spec '{"n_classes": 2, "n_train": 64, "n_val": 64, "n_test": 20000}' --size 32 --out "$W/big.npz" 2>/dev/null
train() {  # train <command> <name> <hparams file> [JSON overriding some hparams]
    local hp
    hp=$("$PY" -c 'import json, sys; print(json.dumps({**json.load(open(sys.argv[1])), **json.loads(sys.argv[2])}))' "$3" "${4:-{\}}")
    t0
    "$MR" "$1" "${GPU[@]}" --train-data "$W/p.npz" --val-data "$W/p.npz" --n-classes 2 --hparams "$hp" \
        --checkpoint-every 5 --eval-batch-size 1024 --state "$W/$2.st" --out-model "$W/$2.pt" \
        --out-metrics "$W/$2.json" --out-history "$W/$2.csv" 2> "$W/$2.log" || tail -3 "$W/$2.log"
    t1 "$1 $2"
}
train train base_bs256 "$W/hp_base.json"
train train base_bs32 "$W/hp_base.json" '{"batch_size": 32, "epochs": 5}'
train train base_bs1024 "$W/hp_base.json" '{"batch_size": 1024}'
train train-trades trades_bs256 "$W/hp_trades.json"
t0
"$MR" construct "${GPU[@]}" --model "$W/base_bs256.pt" --weights best --data "$W/p.npz" --settings "$(cat "$W/construct.json")" \
    --out "$W/nr.npz" --stats "$W/nr.json" --state "$W/nr.st" --batch-size 512 2> "$W/nr.log" || tail -3 "$W/nr.log"
t1 "construct, 4,708 images, PGD-100"
for d in p big; do
    t0
    "$MR" evaluate "${GPU[@]}" --model "$W/base_bs256.pt" --weights best --data "$W/$d.npz" --split test \
        --out "$W/e_$d.json" 2> "$W/e_$d.log" || tail -3 "$W/e_$d.log"
    t1 "evaluate, $d.npz's test split (fp32, exact)"
done
# AutoAttack checks for an interruption between batches only: a robust model's batch of 500
# can outlast the time given here, which then stops it (the batches before it are kept)
for m in base_bs256 trades_bs256; do
    t0
    timeout -k 10 120 "$MR" autoattack "${GPU[@]}" --model "$W/$m.pt" --weights best --data "$W/p.npz" --split test --eps 4 \
        --n-images 0 --seed 0 --batch-size 500 --state "$W/aa_$m.st" --out "$W/aa_$m.json" 2> "$W/aa_$m.log" \
        || echo "autoattack $m: exit $? (124: stopped at 120 s)"
    t1 "autoattack $m, 624 images"
done
