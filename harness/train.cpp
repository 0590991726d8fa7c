#include "harness/train.h"

#include "attention_impls/registry.h"
#include "datasets/synthetic_text.h"
#include "harness/generate.h"
#include "harness/llama.h"
#include "harness/progress.h"
#include "harness/runner.h"

#include <ATen/autocast_mode.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>

#include <sys/stat.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <set>

namespace lcb::train {

nlohmann::json TrainConfig::to_json() const {
  return {{"hidden_size", hidden_size},
          {"intermediate_size", intermediate_size},
          {"num_layers", num_layers},
          {"num_heads", num_heads},
          {"num_kv_heads", num_kv_heads},
          {"rope_theta", rope_theta},
          {"max_position_embeddings", max_position_embeddings},
          {"tie_word_embeddings", tie_word_embeddings},
          {"tokenizer", tokenizer},
          {"tasks", tasks},
          {"min_length", min_length},
          {"max_length", max_length},
          {"batch_tokens", batch_tokens},
          {"curriculum_steps", curriculum_steps},
          {"steps", steps},
          {"warmup", warmup},
          {"lr", lr},
          {"min_lr_ratio", min_lr_ratio},
          {"weight_decay", weight_decay},
          {"grad_clip", grad_clip},
          {"attention", attention},
          {"init", init},
          {"eval_every", eval_every},
          {"eval_samples", eval_samples},
          {"eval_lengths", eval_lengths},
          {"seed", seed},
          {"device", device},
          {"save_dtype", save_dtype},
          {"time_limit_s", time_limit_s}};
}

TrainConfig parse_train_config(const nlohmann::json& j, const std::string& source) {
  auto fail = [&](const std::string& what) { return std::invalid_argument(source + ": " + what); };
  if (!j.is_object()) throw fail("a training config must be a JSON object");
  TrainConfig c;
  const nlohmann::json defaults = c.to_json();
  for (const auto& [key, value] : j.items()) {
    if (!defaults.contains(key)) {
      std::string accepted;
      for (const auto& [k, v] : defaults.items()) accepted += (accepted.empty() ? "" : ", ") + k;
      throw fail("unknown field '" + key + "'; accepted fields: " + accepted);
    }
    const auto& def = defaults[key];
    const bool same_kind = (def.is_number_integer() && value.is_number_integer()) ||
                           (def.is_number_float() && value.is_number()) || (def.is_boolean() && value.is_boolean()) ||
                           (def.is_string() && value.is_string()) || (def.is_array() && value.is_array());
    if (!same_kind) throw fail("field '" + key + "' must be a " + std::string(def.type_name()) + ", got " + value.dump());
  }
  nlohmann::json merged = defaults;
  merged.update(j);
  for (const char* key : {"tasks"}) {
    for (const auto& x : merged[key]) {
      if (!x.is_string()) throw fail(std::string("field '") + key + "' must be a list of strings, got " + merged[key].dump());
    }
  }
  for (const char* key : {"eval_lengths"}) {
    for (const auto& x : merged[key]) {
      if (!x.is_number_integer() || x.get<int64_t>() < 1) {
        throw fail(std::string("field '") + key + "' must be a list of positive integers, got " + merged[key].dump());
      }
    }
  }
  for (const char* key : {"hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads", "max_position_embeddings",
                          "batch_tokens", "steps", "eval_every", "eval_samples"}) {
    if (merged[key].get<int64_t>() < 1) throw fail(std::string("field '") + key + "' must be >= 1, got " + merged[key].dump());
  }
  for (const char* key : {"warmup", "curriculum_steps", "time_limit_s"}) {
    if (merged[key].get<int64_t>() < 0) throw fail(std::string("field '") + key + "' must be >= 0, got " + merged[key].dump());
  }
  for (const char* key : {"lr", "rope_theta", "grad_clip"}) {
    if (!(merged[key].get<double>() > 0)) throw fail(std::string("field '") + key + "' must be > 0, got " + merged[key].dump());
  }
  if (merged["device"] != "auto" && merged["device"] != "cpu" && merged["device"] != "cuda") {
    throw fail("field 'device': " + merged["device"].dump() + " not accepted (auto, cpu, cuda)");
  }
  c.hidden_size = merged["hidden_size"];
  c.intermediate_size = merged["intermediate_size"];
  c.num_layers = merged["num_layers"];
  c.num_heads = merged["num_heads"];
  c.num_kv_heads = merged["num_kv_heads"];
  c.rope_theta = merged["rope_theta"];
  c.max_position_embeddings = merged["max_position_embeddings"];
  c.tie_word_embeddings = merged["tie_word_embeddings"];
  c.tokenizer = merged["tokenizer"];
  c.tasks = merged["tasks"].get<std::vector<std::string>>();
  c.min_length = merged["min_length"];
  c.max_length = merged["max_length"];
  c.batch_tokens = merged["batch_tokens"];
  c.curriculum_steps = merged["curriculum_steps"];
  c.steps = merged["steps"];
  c.warmup = merged["warmup"];
  c.lr = merged["lr"];
  c.min_lr_ratio = merged["min_lr_ratio"];
  c.weight_decay = merged["weight_decay"];
  c.grad_clip = merged["grad_clip"];
  c.attention = merged["attention"];
  c.init = merged["init"];
  c.eval_every = merged["eval_every"];
  c.eval_samples = merged["eval_samples"];
  c.eval_lengths = merged["eval_lengths"].get<std::vector<int64_t>>();
  c.seed = merged["seed"];
  c.device = merged["device"];
  c.save_dtype = merged["save_dtype"];
  c.time_limit_s = merged["time_limit_s"];
  if (!c.init.empty()) {
    for (const char* key : {"hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads", "rope_theta",
                            "max_position_embeddings", "tie_word_embeddings"}) {
      if (j.contains(key)) {
        throw fail(std::string("field '") + key + "' conflicts with 'init': a continued run takes the model shape from " +
                   c.init + "/config.json; leave the shape fields out");
      }
    }
  }
  if (c.tokenizer.empty()) throw fail("field 'tokenizer' must name a directory with tokenizer.model");
  const std::set<std::string> known(datasets::text_task_names().begin(), datasets::text_task_names().end());
  for (const auto& t : c.tasks) {
    if (!known.count(t)) throw fail("field 'tasks': unknown task '" + t + "' (passkey, niah_single, kv_retrieval, variable_tracking)");
  }
  if (c.tasks.empty()) throw fail("field 'tasks' must not be empty");
  if (c.min_length < 64 || c.max_length < c.min_length) throw fail("fields 'min_length'/'max_length' need 64 <= min <= max");
  for (int64_t L : c.eval_lengths) {
    if (L < 128) throw fail("field 'eval_lengths': " + std::to_string(L) + " is shorter than the tasks' 128-token minimum");
  }
  if (c.num_heads % c.num_kv_heads != 0 || c.hidden_size % c.num_heads != 0) {
    throw fail("fields 'num_heads', 'num_kv_heads', 'hidden_size' must divide: hidden % heads == 0, heads % kv_heads == 0");
  }
  if (c.steps < 1 || c.batch_tokens < c.max_length) throw fail("fields 'steps' >= 1 and 'batch_tokens' >= 'max_length' are required");
  if (c.save_dtype != "bfloat16" && c.save_dtype != "float32") throw fail("field 'save_dtype': bfloat16 or float32");
  try {
    attn::canonical_spec(c.attention);
  } catch (const std::invalid_argument& e) {
    throw fail(std::string("field 'attention': ") + e.what());
  }
  return c;
}

namespace {

struct Batch {
  at::Tensor input, target;  // [B, T]; target -100 where no loss
  int64_t tokens = 0;
};

Batch make_batch(const TrainConfig& cfg, const datasets::Tokenizer& tok, std::mt19937_64& rng, at::Device device,
                 int64_t step) {
  const double lo = std::log(static_cast<double>(cfg.min_length));
  double hi = std::log(static_cast<double>(cfg.max_length));
  if (step < cfg.curriculum_steps) {
    const double start = std::min(hi, std::log(4.0 * static_cast<double>(cfg.min_length)));
    hi = start + (hi - start) * static_cast<double>(step) / static_cast<double>(cfg.curriculum_steps);
  }
  const int64_t L = std::llround(std::exp(std::uniform_real_distribution<double>(lo, hi)(rng)));
  const int64_t B = std::max<int64_t>(1, cfg.batch_tokens / L);
  std::vector<std::vector<int64_t>> seqs;
  std::vector<int64_t> prompt_lens;
  int64_t T = 0;
  for (int64_t b = 0; b < B; ++b) {
    const std::string& task = cfg.tasks[rng() % cfg.tasks.size()];
    const double depth = std::uniform_real_distribution<double>(0, 1)(rng);
    const auto s = datasets::make_text_sample(task, L, depth, rng(), tok);
    std::vector<int64_t> seq = s.prompt;
    seq.insert(seq.end(), s.answer_ids.begin(), s.answer_ids.end());
    prompt_lens.push_back(static_cast<int64_t>(s.prompt.size()));
    T = std::max<int64_t>(T, static_cast<int64_t>(seq.size()) - 1);
    seqs.push_back(std::move(seq));
  }
  at::Tensor input = at::full({B, T}, tok.pad_id(), at::kLong), target = at::full({B, T}, -100, at::kLong);
  auto in = input.accessor<int64_t, 2>(), tg = target.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B; ++b) {
    const auto& s = seqs[b];
    for (size_t t = 0; t + 1 < s.size(); ++t) {
      in[b][t] = s[t];
      if (static_cast<int64_t>(t) + 1 >= prompt_lens[b]) tg[b][t] = s[t + 1];  // answer tokens only
    }
  }
  return {input.to(device), target.to(device), B * T};
}

double lr_at(const TrainConfig& c, int64_t step) {
  if (step < c.warmup) return c.lr * static_cast<double>(step + 1) / static_cast<double>(c.warmup);
  const double p = static_cast<double>(step - c.warmup) / static_cast<double>(std::max<int64_t>(1, c.steps - c.warmup));
  return c.lr * (c.min_lr_ratio + (1 - c.min_lr_ratio) * 0.5 * (1 + std::cos(M_PI * std::min(1.0, p))));
}

// Exact match of greedy answers, per task and length.
nlohmann::json evaluate(model::Llama& m, const TrainConfig& cfg, const datasets::Tokenizer& tok, at::Device device) {
  m->eval();
  nlohmann::json out;
  for (const auto& task : cfg.tasks) {
    for (int64_t L : cfg.eval_lengths) {
      int64_t hits = 0;
      for (int64_t i = 0; i < cfg.eval_samples; ++i) {
        const double depth = (static_cast<double>(i) + 0.5) / static_cast<double>(cfg.eval_samples);
        const auto s = datasets::make_text_sample(task, L, depth, 1000003 * (i + 1) + static_cast<uint64_t>(L), tok);
        const auto g = model::greedy_generate(m, s.prompt, static_cast<int64_t>(s.answer_ids.size()) + 2, {tok.eos_id()}, device);
        std::string text = tok.decode(g.ids);
        text.erase(0, text.find_first_not_of(' '));
        hits += text == s.answer;
      }
      out[task][std::to_string(L)] = static_cast<double>(hits) / static_cast<double>(cfg.eval_samples);
    }
  }
  m->train();
  return out;
}

void init_weights(model::Llama& m, uint64_t seed) {
  torch::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (auto& p : m->named_parameters()) {
    if (p.key().find("norm") != std::string::npos) continue;  // RMSNorm gains stay 1
    p.value().copy_(at::normal(0.0, 0.02, p.value().sizes(), gen, at::TensorOptions().dtype(at::kFloat)));
  }
}


model::Llama fresh_model(const TrainConfig& cfg, const datasets::Tokenizer& tok) {
  model::LlamaConfig mc;
  mc.vocab_size = tok.vocab_size();
  mc.hidden_size = cfg.hidden_size;
  mc.intermediate_size = cfg.intermediate_size;
  mc.num_layers = cfg.num_layers;
  mc.num_heads = cfg.num_heads;
  mc.num_kv_heads = cfg.num_kv_heads;
  mc.head_dim = cfg.hidden_size / cfg.num_heads;
  mc.rope_theta = cfg.rope_theta;
  mc.max_position_embeddings = cfg.max_position_embeddings;
  mc.tie_word_embeddings = cfg.tie_word_embeddings;
  mc.bos_token_id = tok.bos_id();
  mc.eos_token_ids = {tok.eos_id()};
  model::Llama m(mc);
  init_weights(m, cfg.seed);
  return m;
}

// Weights from a checkpoint, trained on in float32; its tokenizer must be the one given.
model::Llama continued_model(const TrainConfig& cfg, const datasets::Tokenizer& tok) {
  model::Llama m = model::load_llama(cfg.init, at::kCPU, at::kFloat);
  if (m->config().vocab_size != tok.vocab_size()) {
    throw std::invalid_argument("training config: field 'init': " + cfg.init + " has a vocabulary of " +
                                std::to_string(m->config().vocab_size) + " tokens, the tokenizer in " + cfg.tokenizer +
                                " has " + std::to_string(tok.vocab_size()));
  }
  return m;
}

}  // namespace

TrainResult train(const TrainConfig& cfg, const std::string& out_dir, bool quiet) {
  const auto t0 = std::chrono::steady_clock::now();
  const at::Device device = harness::resolve_device(cfg.device);
  const datasets::Tokenizer tok = datasets::Tokenizer::load(cfg.tokenizer);
  for (const auto& task : cfg.tasks) {  // every task must fit the shortest length before any step runs
    try {
      datasets::make_text_sample(task, cfg.min_length, 0.5, 0, tok);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("training config: field 'min_length': " + std::string(e.what()));
    }
  }
  model::Llama m = cfg.init.empty() ? fresh_model(cfg, tok) : continued_model(cfg, tok);
  const model::LlamaConfig& mc = m->config();
  m->set_attention(cfg.attention);
  m->to(device);
  m->train();
  torch::optim::AdamW opt(m->parameters(), torch::optim::AdamWOptions(cfg.lr).weight_decay(cfg.weight_decay).betas({0.9, 0.95}));
  std::mt19937_64 rng(cfg.seed);
  const bool autocast = device.is_cuda();

  mkdir(out_dir.c_str(), 0755);
  std::ofstream log(out_dir + "/train_log.jsonl");
  TrainResult res;
  double loss_avg = 0;
  for (int64_t step = 0; step < cfg.steps; ++step) {
    const Batch batch = make_batch(cfg, tok, rng, device, step);
    const double lr = lr_at(cfg, step);
    for (auto& group : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
    at::autocast::set_autocast_enabled(at::kCUDA, autocast);
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    const at::Tensor logits = m->forward(batch.input);
    at::autocast::set_autocast_enabled(at::kCUDA, false);
    at::autocast::clear_cache();
    const at::Tensor loss = at::cross_entropy_loss(logits.to(at::kFloat).reshape({-1, mc.vocab_size}),
                                                   batch.target.reshape({-1}), {}, at::Reduction::Mean, -100);
    opt.zero_grad();
    loss.backward();
    torch::nn::utils::clip_grad_norm_(m->parameters(), cfg.grad_clip);
    opt.step();
    res.tokens += batch.tokens;
    const double l = loss.item<double>();
    loss_avg = step == 0 ? l : 0.95 * loss_avg + 0.05 * l;
    res.final_loss = loss_avg;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!quiet && (step % 10 == 0 || step + 1 == cfg.steps)) {
      std::fprintf(stderr, "step %lld/%lld  loss %.4f  lr %.2e  %.0f tok/s  elapsed %s  eta %s\n",
                   static_cast<long long>(step + 1), static_cast<long long>(cfg.steps), loss_avg, lr,
                   static_cast<double>(res.tokens) / secs, harness::format_duration(secs).c_str(),
                   harness::format_duration(secs / static_cast<double>(step + 1) * static_cast<double>(cfg.steps - step - 1)).c_str());
    }
    nlohmann::json rec = {{"step", step + 1}, {"loss", l}, {"loss_avg", loss_avg}, {"lr", lr}, {"tokens", res.tokens}};
    const bool out_of_time = cfg.time_limit_s > 0 && secs > static_cast<double>(cfg.time_limit_s);
    if ((step + 1) % cfg.eval_every == 0 || step + 1 == cfg.steps || out_of_time) {
      try {
        rec["eval"] = evaluate(m, cfg, tok, device);
      } catch (const std::invalid_argument& e) {  // a sample that cannot fit must not lose the run
        rec["eval"] = {{"error", e.what()}};
      }
      res.final_eval = rec["eval"];
      if (!quiet) std::fprintf(stderr, "eval at step %lld: %s\n", static_cast<long long>(step + 1), rec["eval"].dump().c_str());
    }
    log << rec.dump() << "\n";
    log.flush();
    res.steps = step + 1;
    if (out_of_time) {
      if (!quiet) std::fprintf(stderr, "time limit of %lld s reached at step %lld\n", static_cast<long long>(cfg.time_limit_s),
                               static_cast<long long>(step + 1));
      break;
    }
  }
  const at::ScalarType save = cfg.save_dtype == "bfloat16" ? at::kBFloat16 : at::kFloat;
  model::save_llama(m, out_dir, save);
  if (cfg.tokenizer != out_dir) {
    std::ifstream src(cfg.tokenizer + "/tokenizer.model", std::ios::binary);
    std::ofstream(out_dir + "/tokenizer.model", std::ios::binary) << src.rdbuf();
  }
  nlohmann::json tc = cfg.to_json();
  // The shape actually trained (a continued run takes it from the checkpoint).
  tc["hidden_size"] = mc.hidden_size;
  tc["intermediate_size"] = mc.intermediate_size;
  tc["num_layers"] = mc.num_layers;
  tc["num_heads"] = mc.num_heads;
  tc["num_kv_heads"] = mc.num_kv_heads;
  tc["rope_theta"] = mc.rope_theta;
  tc["max_position_embeddings"] = mc.max_position_embeddings;
  tc["tie_word_embeddings"] = mc.tie_word_embeddings;
  tc["final_loss"] = res.final_loss;
  tc["final_eval"] = res.final_eval;
  tc["tokens"] = res.tokens;
  tc["steps_done"] = res.steps;
  std::ofstream(out_dir + "/train_config.json") << tc.dump(2) << "\n";
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace lcb::train
