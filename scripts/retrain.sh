#!/bin/sh
# The retrain chain, every step resumable (run it again after an interruption and it goes on):
#   corpus -> dataset -> teacher (`musicbox train`, ~2 h) -> one-row, few-step student (`musicbox distill`,
#   then 1,500 updates more from it)
#   -> INT8 ONNX bundle (`musicbox quantize`) -> evaluation (`musicbox eval`).
# TEACHER=<a trained checkpoint folder> skips training (the shipped model's teacher is in git: its
# config.json and model.safetensors at 8e3cbf1:assets/checkpoint/). Outputs go to $RUNS (runs/);
# copy the final checkpoint and bundle to assets/ only when a retrain is final (docs/design.md).
set -eu
cd "$(dirname "$0")/.."
MB=.venv/bin/musicbox
RUNS=${RUNS:-runs}
TEACHER=${TEACHER:-$RUNS/teacher}

$MB data build --no-progress
if [ ! -f "$TEACHER/config.json" ]; then
    $MB train --run-dir "$RUNS/train" --out "$TEACHER"
fi
if [ ! -f "$RUNS/student/config.json" ]; then
    $MB distill --from "$TEACHER" --run-dir "$RUNS/distill" --out "$RUNS/student"
fi
# the shipped model goes on from there with its batches spread over mode, density and the mood's middle
if [ ! -f "$RUNS/student2/config.json" ]; then
    $MB distill --from "$TEACHER" --init "$RUNS/student" --run-dir "$RUNS/distill2" --out "$RUNS/student2" \
        --train-steps 1500 --lr 1e-4 --balance 1 --mid-mood 0.6
fi
if [ ! -f "$RUNS/bundle/manifest.json" ]; then
    $MB quantize "$RUNS/student2" --out "$RUNS/bundle" --report "$RUNS/reports/quantize"
fi
$MB eval --bundle "$RUNS/bundle" --out "$RUNS/reports/eval"
