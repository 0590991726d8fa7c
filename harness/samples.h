// Prompts of model tasks: generated once and cached on disk, and exported as JSONL (`lcb generate`).
#pragma once

#include "datasets/synthetic_text.h"
#include "datasets/tokenizer.h"
#include "harness/config.h"
#include "tasks/task.h"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace lcb::harness {

// $LCB_CACHE_DIR, else ~/.cache/lcb/samples.
std::string sample_cache_dir();

// The task's prompt `index` for a cell, from the cache when present (generated tasks only).
datasets::TextSample cached_sample(const tasks::ModelTask& task, const tasks::CellParams& cell, const datasets::Tokenizer& tok,
                                   int64_t index);

// `lcb generate`: the prompts of the config's model tasks for every (task, length, depth, seed),
// one JSON object each (decoded prompt, answer, expected items, token counts, tokenizer hash), in
// the tokenizer of the config's model. Throws std::invalid_argument for model-free tasks.
std::vector<nlohmann::json> export_samples(const RunConfig& config);

}  // namespace lcb::harness
