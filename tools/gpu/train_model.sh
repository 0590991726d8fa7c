#!/usr/bin/env bash
# Trains the embedded default model on the GPU machine, then evaluates the five attention
# implementations on it (harness/configs/model_eval.json). Everything lands in OUT_DIR: the model
# files (config.json, model.safetensors, tokenizer.model, train_config.json, train_log.jsonl), the
# evaluation database and the logs.
#
#   tools/gpu/train_model.sh OUT_DIR [DEB_DIR]
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT_DIR=${1:?usage: tools/gpu/train_model.sh OUT_DIR [DEB_DIR]}
DEB_DIR=${2:-.gpu-debs}
mkdir -p "$OUT_DIR"
source tools/gpu/build.sh

W=/tmp/lcb-train
rm -rf "$W" && mkdir -p "$W"
build-gpu/lcb train-tokenizer --out "$W/tokenizer" --vocab 1024 --lines 20000 --seed 0 2>/dev/null
build-gpu/lcb train --config datasets/model_train.json --tokenizer "$W/tokenizer" --out "$W/model" 2>"$OUT_DIR/train.log"
tail -n 3 "$OUT_DIR/train.log"
for f in config.json model.safetensors tokenizer.model train_config.json train_log.jsonl; do cp "$W/model/$f" "$OUT_DIR/"; done

build-gpu/lcb run --config harness/configs/model_eval.json --device cuda --model "$W/model" --db "$OUT_DIR/eval.sqlite" \
  >"$OUT_DIR/eval.txt" 2>/dev/null
cat "$OUT_DIR/eval.txt"
