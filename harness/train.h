// `lcb train`: trains a small Llama-family decoder (from scratch, or on from a checkpoint) on lcb's synthetic long-context
// text tasks, with the loss on answer tokens only. AdamW, linear warm-up then cosine decay,
// gradient clipping, bf16 autocast on CUDA, periodic greedy-decoding evaluation, Hugging Face
// checkpoints, a progress line with loss and tokens/s. The attention spec is a training option, so
// the same command trains a dense model or a DGA-trained twin.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace lcb::train {

struct TrainConfig {
  // Model shape (vocabulary from the tokenizer).
  int64_t hidden_size = 256, intermediate_size = 704, num_layers = 4, num_heads = 8, num_kv_heads = 2;
  double rope_theta = 10000.0;
  int64_t max_position_embeddings = 8192;
  bool tie_word_embeddings = true;
  // Data.
  std::string tokenizer;  // directory holding tokenizer.model
  std::vector<std::string> tasks = {"passkey", "niah_single", "kv_retrieval", "variable_tracking"};
  int64_t min_length = 128, max_length = 4096;  // prompt lengths, drawn log-uniformly per step
  int64_t batch_tokens = 32768;                 // tokens per step (batch = batch_tokens / length)
  int64_t curriculum_steps = 0;  // the longest length grows log-linearly from 4 x min_length to
                                 // max_length over these steps (0: full range from the start)
  // Optimisation.
  int64_t steps = 1000, warmup = 50;
  double lr = 1e-3, min_lr_ratio = 0.1, weight_decay = 0.1, grad_clip = 1.0;
  std::string attention = "dense";
  // Continued training: a Hugging Face model directory whose weights start the run (its shape
  // replaces the shape fields above, which must then be left out). Empty: from scratch.
  std::string init;
  // Evaluation and output.
  int64_t eval_every = 250, eval_samples = 16;
  std::vector<int64_t> eval_lengths = {1024, 4096};
  uint64_t seed = 0;
  std::string device = "auto";
  std::string save_dtype = "bfloat16";
  int64_t time_limit_s = 0;  // stop early (and save) after this long; 0 = no limit

  nlohmann::json to_json() const;
};

// Parses and validates (unknown fields and bad values name the field); throws std::invalid_argument.
TrainConfig parse_train_config(const nlohmann::json& j, const std::string& source);

struct TrainResult {
  double final_loss = 0;
  nlohmann::json final_eval;  // task -> length -> exact-match accuracy
  double seconds = 0;
  int64_t tokens = 0;
  int64_t steps = 0;
};

// Trains and writes out_dir/{config.json, model.safetensors, tokenizer.model, train_config.json,
// train_log.jsonl}. Progress goes to stderr unless quiet.
TrainResult train(const TrainConfig& cfg, const std::string& out_dir, bool quiet);

}  // namespace lcb::train
