#!/bin/sh
# The retrain chain, every step resumable (run it again after an interruption and it goes on):
#   corpus -> dataset -> teacher (`musicbox train`, ~2 h) -> one-row, few-step student (`musicbox distill`)
#   -> INT8 ONNX bundle (`musicbox quantize`) -> evaluation (`musicbox eval`).
# TEACHER=assets/checkpoint skips training and distils the shipped teacher. Outputs go to $RUNS (runs/);
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
if [ ! -f "$RUNS/bundle/manifest.json" ]; then
    $MB quantize "$RUNS/student" --out "$RUNS/bundle" --report "$RUNS/reports/quantize"
fi
$MB eval --bundle "$RUNS/bundle" --out "$RUNS/reports/eval"
