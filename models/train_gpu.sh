#!/usr/bin/env bash
# One GPU session, everything at once on one card: render the synthetic train/val sets, train the
# five ablation variants (one process each) and the gpu-large config side by side for MIN minutes of
# training time each, score the variants, and pack logs and weights into OUT.
#
#   OUT=/tmp/gpu-out MIN=6 bash models/train_gpu.sh
#
# Knobs (environment): OUT, MIN (training minutes per run), NUM (training frames), VAL (validation
# frames), BATCH / LBATCH (ablation / gpu-large batch), DEVICE (cuda), JOBS (frame-rendering processes), WORK (scratch folder), LIMIT (seconds
# after which training runs are stopped, so that whatever finished is still packed).
set -u
cd "$(dirname "$0")"
OUT=${OUT:-/tmp/gpu-out}
MIN=${MIN:-6}
NUM=${NUM:-1200}
VAL=${VAL:-100}
DEVICE=${DEVICE:-cuda}
JOBS=${JOBS:-$(nproc)}
WORK=${WORK:-/tmp/speck-gpu}
LIMIT=${LIMIT:-540}
BATCH=${BATCH:-32}
LBATCH=${LBATCH:-32}
PY=${PY:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$WORK"
t0=$(date +%s)
stamp() { echo "[$(($(date +%s) - t0)) s] $*"; }

stamp "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
echo "cpus $(nproc)"; free -g | head -2

stamp "rendering $NUM training and $VAL validation frames"
$PY -m speck_models.data.synth --out "$WORK/synth_train" --num "$NUM" --seed 1 --size 1280x720 --jobs "$JOBS" || exit 1
$PY -m speck_models.data.synth --out "$WORK/synth_val" --num "$VAL" --seed 2 --size 1280x720 --jobs "$JOBS" || exit 1

stamp "training: ablation (5 variants) and gpu-large, $MIN min each"
timeout -s INT "$((LIMIT - ($(date +%s) - t0)))" \
    $PY -m speck_models.ablate --data "$WORK/synth_train" --val "$WORK/synth_val" --out "$WORK/ablate" \
    --minutes "$MIN" --val-limit "$VAL" --jobs 5 --device "$DEVICE" --workers 2 --batch "$BATCH" --lr 3e-3 \
    --threads 1 > "$WORK/ablate.log" 2>&1 &
abl=$!
timeout -s INT "$((LIMIT - ($(date +%s) - t0)))" \
    $PY -m speck_models.train --config gpu-large --data "$WORK/synth_train" --val "$WORK/synth_val" \
    --val-limit "$VAL" --out "$WORK/large" --minutes "$MIN" --batch "$LBATCH" --workers 4 --threads 1 --device "$DEVICE" \
    --eval-every 1000 > "$WORK/large.log" 2>&1 &
lrg=$!
(sleep 150; nvidia-smi --query-gpu=utilization.gpu,memory.used,clocks.sm --format=csv 2>&1; uptime) &
wait $abl; stamp "ablation exit $?"
wait $lrg; stamp "gpu-large exit $?"
cat "$WORK/ablate/results.md" 2>/dev/null
grep -h "^done\|^eval" "$WORK/large.log" "$WORK"/ablate/v*/train.log 2>/dev/null

stamp "packing"
# Weights only (no optimiser state): enough for export.py and evaluate.py.
strip() {
    [ -f "$1" ] && $PY -c "import sys, torch
ck = torch.load(sys.argv[1], map_location='cpu', weights_only=False)
keep = {k: ck[k] for k in ('model', 'cfg', 'iter', 'elapsed', 'best', 'val') if k in ck}
torch.save(keep, sys.argv[2])" "$1" "$2"
}
strip "$WORK/ablate/v4/last.pt" "$OUT/tiny-gpu.pt"
strip "$WORK/large/best.pt" "$OUT/large-gpu.pt" || strip "$WORK/large/last.pt" "$OUT/large-gpu.pt"
for i in 0 1 2 3; do strip "$WORK/ablate/v$i/last.pt" "$WORK/ablate/v$i/weights.pt"; done
tar -C "$WORK" -czf "$OUT/logs.tar.gz" ablate.log large.log large/log.jsonl \
    $(cd "$WORK" && ls ablate/results.* ablate/v*/log.jsonl ablate/v*/train.log 2>/dev/null)
tar -C "$WORK" -cf "$OUT/variants.tar" $(cd "$WORK" && ls ablate/v*/weights.pt 2>/dev/null)
ls -la "$OUT"
stamp "done"
