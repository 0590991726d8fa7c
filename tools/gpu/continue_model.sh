#!/usr/bin/env bash
# Continues training of the embedded model on the GPU machine, twice from the same checkpoint
# (datasets/model) with the same data and schedule: once with dense attention
# (datasets/model_continue.json, the new embedded default) and once with DGA
# (datasets/model_continue_dga.json, the DGA-trained twin). Both run at once (the tiny model
# leaves the GPU mostly idle; generating the text is CPU work). Then evaluates the five
# implementations on each (harness/configs/model_eval.json). OUT_DIR gets build.log and
# models.tar with dense/ and dga/, each holding config.json, model.safetensors, tokenizer.model,
# train_config.json, train_log.jsonl, train.log and eval.txt (the sweep table).
#
#   tools/gpu/continue_model.sh OUT_DIR [DEB_DIR]
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT_DIR=${1:?usage: tools/gpu/continue_model.sh OUT_DIR [DEB_DIR]}
DEB_DIR=${2:-.gpu-debs}
mkdir -p "$OUT_DIR"
LCB_GPU_TARGETS=lcb source tools/gpu/build.sh

W=/tmp/lcb-continue
rm -rf "$W" && mkdir -p "$W/dense" "$W/dga"
build-gpu/lcb train --config datasets/model_continue.json --out "$W/dense" 2>"$W/dense/train.log" &
dense_pid=$!
build-gpu/lcb train --config datasets/model_continue_dga.json --out "$W/dga" 2>"$W/dga/train.log" &
dga_pid=$!
wait $dense_pid; echo "dense training exit $?"
wait $dga_pid; echo "dga training exit $?"
for which in dense dga; do
  grep -E "^eval|time limit|^trained" "$W/$which/train.log" | sed "s/^/$which: /"
done
tar -C "$W" -cf "$OUT_DIR/models.tar" dense dga  # the models are safe before the evaluation starts
for which in dense dga; do
  build-gpu/lcb run --config harness/configs/model_eval.json --device cuda --model "$W/$which" --db "$W/$which.sqlite" \
    >"$W/$which/eval.txt" 2>/dev/null
  echo "== $which-trained model"; cat "$W/$which/eval.txt"
done
tar -C "$W" -cf "$OUT_DIR/models.tar" dense dga  # again, with the eval tables
