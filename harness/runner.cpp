#include "harness/runner.h"

#include "attention_impls/registry.h"
#include "datasets/tokenizer.h"
#include "harness/generate.h"
#include "harness/llama.h"
#include "harness/measure.h"
#include "harness/progress.h"
#include "harness/provenance.h"
#include "harness/samples.h"
#include "tasks/task.h"

#include <ATen/DeviceAccelerator.h>
#include <ATen/core/grad_mode.h>
#include <c10/util/Exception.h>
#include <torch/cuda.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace lcb::harness {

std::string default_model_dir() {
  if (const char* env = std::getenv("LCB_MODEL_DIR")) return env;
  return std::string(LCB_SOURCE_DIR) + "/datasets/model";
}

at::Device resolve_device(const std::string& device) {
  const bool cuda = torch::cuda::is_available();
  if (device == "cuda" && !cuda) {
    throw std::invalid_argument("device 'cuda' asked for, but no CUDA device is available (use --device cpu or auto)");
  }
  if (device == "cuda" || (device == "auto" && cuda)) return at::Device(at::kCUDA, 0);
  return at::Device(at::kCPU);
}

at::ScalarType resolve_dtype(const std::string& dtype, const at::Device& device) {
  if (dtype == "auto") return device.is_cuda() ? at::kBFloat16 : at::kFloat;
  if (dtype == "float32") return at::kFloat;
  if (dtype == "bfloat16") return at::kBFloat16;
  if (dtype == "float16") return at::kHalf;
  if (dtype == "float64") return at::kDouble;
  throw std::invalid_argument("dtype '" + dtype + "' not accepted (auto, float32, bfloat16, float16, float64)");
}

std::string dtype_name(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat: return "float32";
    case at::kBFloat16: return "bfloat16";
    case at::kHalf: return "float16";
    case at::kDouble: return "float64";
    default: return c10::toString(dtype);
  }
}

namespace {

struct CellSpec {
  std::string impl, task;
  int64_t length = 0, seed = 0;
  double depth = 0;
};

// One configured task of either kind.
struct TaskHandle {
  std::string spec;
  int version = 0, metric_version = 0;
  std::unique_ptr<tasks::AttentionTask> attention;
  std::unique_ptr<tasks::ModelTask> model;
};

TaskHandle make_handle(const std::string& spec) {
  TaskHandle h;
  h.spec = spec;
  if (tasks::task_kind(spec) == tasks::TaskKind::Attention) {
    h.attention = tasks::make_task(spec);
    h.version = h.attention->version();
    h.metric_version = h.attention->metric_version();
  } else {
    h.model = tasks::make_model_task(spec);
    h.version = h.model->version();
    h.metric_version = h.model->metric_version();
  }
  return h;
}

// The language model of model tasks, loaded on first use.
struct LoadedModel {
  model::Llama llama{nullptr};
  std::unique_ptr<datasets::Tokenizer> tokenizer;
  std::string id;  // hash of config, tokenizer and weights: part of every model cell's key
};

struct Context {
  const RunConfig& cfg;
  at::Device device;
  at::ScalarType dtype;
  std::string device_name;
  int64_t run_id = 0;
  std::string db_path;
  std::string model_dir;
  std::string model_id;  // empty until a model task needs it
  std::unique_ptr<LoadedModel> model;
};

std::string first_line(const std::string& s) {
  const std::string line = s.substr(0, s.find('\n'));
  return line.size() > 400 ? line.substr(0, 400) + "..." : line;
}

std::string cell_key(const Context& ctx, const CellSpec& c, const TaskHandle& task) {
  nlohmann::json j = {{"impl", c.impl},
                            {"task", c.task},
                            {"task_version", task.version},
                            {"metric_version", task.metric_version},
                            {"length", c.length},
                            {"depth", c.depth},
                            {"seed", c.seed},
                            {"batch", ctx.cfg.batch},
                            {"dtype", dtype_name(ctx.dtype)},
                            {"device", ctx.device.str()},
                            {"device_name", ctx.device_name},
                            {"commit", provenance().commit}};
  if (task.model) j["model"] = ctx.model_id;
  return hash_hex(j.dump());
}

std::string repro_command(const Context& ctx, const CellSpec& c) {
  std::ostringstream s;
  s << "lcb run --db " << shell_quote(ctx.db_path) << " --impl " << shell_quote(c.impl) << " --task "
    << shell_quote(c.task) << " --lengths " << c.length << " --depths " << format_number(c.depth) << " --seeds "
    << c.seed << " --batch " << ctx.cfg.batch << " --dtype " << dtype_name(ctx.dtype) << " --device "
    << ctx.device.type() << " --repeats " << ctx.cfg.repeats << " --warmup " << ctx.cfg.warmup;
  if (ctx.cfg.chunk_rows != RunConfig{}.chunk_rows) s << " --chunk-rows " << ctx.cfg.chunk_rows;
  if (!ctx.cfg.model.empty()) s << " --model " << shell_quote(ctx.cfg.model);
  return s.str();
}

store::CellRecord base_record(const Context& ctx, const CellSpec& c, const TaskHandle& task, const std::string& key) {
  store::CellRecord r;
  r.cell_key = key;
  r.run_id = ctx.run_id;
  r.impl = c.impl;
  r.impl_family = split_spec(c.impl).first;
  r.task = c.task;
  r.task_version = task.version;
  r.metric_version = task.metric_version;
  r.length = c.length;
  r.depth = c.depth;
  r.seed = c.seed;
  r.batch = ctx.cfg.batch;
  r.dtype = dtype_name(ctx.dtype);
  r.device = ctx.device.str();
  r.device_name = ctx.device_name;
  r.commit = provenance().commit;
  r.torch_version = provenance().torch_version;
  r.lcb_version = provenance().lcb_version;
  r.repro = repro_command(ctx, c);
  return r;
}

// Inputs of one (task, length, seed, depth) group, shared by its impls.
struct Group {
  std::unique_ptr<tasks::Sample> sample;
  at::Tensor q, k, v;
  at::Tensor dense_out;  // the baseline for fidelity, computed once
  std::vector<datasets::TextSample> samples;  // model tasks: the cell's prompts
  at::Tensor dense_logits;    // model tasks: dense's next-token logits after the prompt
};

// Per-token decode: prefill all but the last kDecodeTokens tokens, then one step per token; the
// first step is a warm-up, the median of the others is stored.
constexpr int64_t kDecodeTokens = 5;

void time_decode(const Context& ctx, const attn::Attention& impl, const Group& g, const attn::Options& opts,
                 store::CellRecord& r) {
  const int64_t L = g.q.size(2), P = L - kDecodeTokens;
  if (P < 1) return;
  std::unique_ptr<attn::Cache> cache;
  impl.forward(g.q.narrow(2, 0, P), g.k.narrow(2, 0, P), g.v.narrow(2, 0, P), opts, &cache);
  Timing steps;
  for (int64_t i = P; i < L; ++i) {
    const Timing t = time_on(ctx.device, 0, 1, [&] {
      impl.decode(g.q.narrow(2, i, 1), g.k.narrow(2, i, 1), g.v.narrow(2, i, 1), *cache, opts);
    });
    if (i > P) steps.ms.push_back(t.ms.front());
  }
  r.decode_ms_median = steps.median();
  r.decode_steps = static_cast<int64_t>(steps.ms.size());
}

void run_cell(const Context& ctx, const tasks::AttentionTask& task, Group& g, store::CellRecord& r) {
  if (!g.q.defined()) {
    g.sample = task.make(tasks::CellParams{r.length, r.depth, r.seed, ctx.cfg.batch});
    g.q = g.sample->q.to(ctx.device, ctx.dtype);
    g.k = g.sample->k.to(ctx.device, ctx.dtype);
    g.v = g.sample->v.to(ctx.device, ctx.dtype);
  }
  const auto impl = attn::make_attention(r.impl);
  const attn::Shape shape = attn::Shape::of(g.q, g.k);
  const attn::Support sup = impl->supports(shape, ctx.dtype, ctx.device);
  if (!sup.ok) {
    r.status = "unsupported";
    r.message = sup.reason;
    return;
  }
  attn::Options opts;
  opts.chunk_rows = ctx.cfg.chunk_rows;
  if (!g.dense_out.defined()) g.dense_out = attn::make_attention("dense")->forward(g.q, g.k, g.v, opts).out;

  opts.want_recall = true;
  std::unique_ptr<attn::Cache> cache;
  const attn::Output first = impl->forward(g.q, g.k, g.v, opts, &cache);
  r.kv_cache_bytes = cache->bytes();
  cache.reset();
  const tasks::Score score = task.score(*g.sample, first.out);
  const at::Tensor diff = (first.out.to(at::kDouble) - g.dense_out.to(at::kDouble));
  const double dense_norm = g.dense_out.to(at::kDouble).norm().item<double>();
  r.rel_l2_error = diff.norm().item<double>() / std::max(dense_norm, 1e-300);
  r.mass_recall = first.mass_recall;
  r.accuracy = score.accuracy;
  r.n_scored = score.n_scored;
  nlohmann::json extra = score.details;
  extra["item_scores"] = score.item_scores;
  r.extra_json = extra.dump();
  r.backend = first.backend;
  r.kept_pairs = first.cost.kept_pairs;
  r.causal_pairs = first.cost.causal_pairs;
  r.attention_flops = first.cost.attention_flops;
  r.selection_flops = first.cost.selection_flops;
  r.achieved_density = first.cost.achieved_density();
  r.requested_density = impl->requested_density(r.length);

  opts.want_recall = false;
  const PeakMemory mem(ctx.device);
  const Timing t = time_on(ctx.device, ctx.cfg.warmup, ctx.cfg.repeats, [&] { impl->forward(g.q, g.k, g.v, opts); });
  r.latency_ms_median = t.median();
  r.latency_ms_min = t.min();
  r.latency_ms_max = t.max();
  r.latency_repeats = static_cast<int64_t>(t.ms.size());
  r.peak_mem_bytes = mem.peak_bytes();
  r.mem_kind = mem.kind();
  time_decode(ctx, *impl, g, opts, r);
  r.status = "ok";
}

// Identity of a model directory: config, tokenizer and weights (the weights' bytes when under
// 256 MB, else their header and size).
std::string model_identity(const std::string& dir) {
  auto read = [](const std::string& path, size_t limit) {
    std::ifstream in(path, std::ios::binary);
    std::string bytes(limit, '\0');
    in.read(bytes.data(), static_cast<std::streamsize>(limit));
    bytes.resize(static_cast<size_t>(in.gcount()));
    in.clear();
    in.seekg(0, std::ios::end);
    return bytes + "|" + std::to_string(static_cast<long long>(in.tellg()));
  };
  return hash_hex(read(dir + "/config.json", 1 << 20) + read(dir + "/tokenizer.model", 64 << 20) +
                  read(dir + "/model.safetensors", 256 << 20));
}

LoadedModel& model_of(Context& ctx) {
  if (!ctx.model) {
    auto m = std::make_unique<LoadedModel>();
    m->tokenizer = std::make_unique<datasets::Tokenizer>(datasets::Tokenizer::load(ctx.model_dir));
    m->llama = model::load_llama(ctx.model_dir, ctx.device, ctx.dtype);
    ctx.model = std::move(m);
  }
  return *ctx.model;
}

// A model task cell: greedy generation with the impl in every layer. Prefill latency is the time
// to first token, decode latency the median inter-token latency; fidelity compares the logits
// after the prompt with dense's.
void run_model_cell(Context& ctx, const tasks::ModelTask& task, Group& g, store::CellRecord& r) {
  if (const auto why = task.unsupported()) {
    r.status = "unsupported";
    r.message = *why;
    return;
  }
  LoadedModel& m = model_of(ctx);
  const auto& tok = *m.tokenizer;
  const tasks::CellParams cell{r.length, r.depth, r.seed, 1};
  if (g.samples.empty()) {
    for (int64_t i = 0; i < task.samples(); ++i) g.samples.push_back(cached_sample(task, cell, tok, i));
  }
  const auto first_it = std::find_if(g.samples.begin(), g.samples.end(), [](const auto& s) { return !s.skipped; });
  if (first_it == g.samples.end()) throw std::invalid_argument("no prompt of this task fits length " + std::to_string(r.length));
  const datasets::TextSample& s = *first_it;
  const at::Tensor prompt = at::tensor(s.prompt, at::TensorOptions().dtype(at::kLong)).unsqueeze(0).to(ctx.device);
  if (!g.dense_logits.defined()) {
    m.llama->set_attention("dense");
    model::DecodeState st;
    g.dense_logits = m.llama->prefill(prompt, st).to(at::kDouble);
  }
  m.llama->set_attention(r.impl);
  const auto impl = attn::make_attention(r.impl);
  const int64_t L = static_cast<int64_t>(s.prompt.size());
  const model::LlamaConfig& mc = m.llama->config();
  const attn::Shape shape{1, mc.num_heads, mc.num_kv_heads, L, L, mc.head_dim, static_cast<int64_t>(c10::elementSize(ctx.dtype))};
  const attn::Support sup = impl->supports(shape, ctx.dtype, ctx.device);
  if (!sup.ok) {
    r.status = "unsupported";
    r.message = sup.reason;
    return;
  }
  // Fidelity, cost and cache size from the first prompt.
  model::DecodeState st;
  const at::Tensor logits = m.llama->prefill(prompt, st).to(at::kDouble);
  r.rel_l2_error = (logits - g.dense_logits).norm().item<double>() / std::max(g.dense_logits.norm().item<double>(), 1e-300);
  r.kept_pairs = st.prefill_cost.kept_pairs;
  r.causal_pairs = st.prefill_cost.causal_pairs;
  r.attention_flops = st.prefill_cost.attention_flops;
  r.selection_flops = st.prefill_cost.selection_flops;
  r.achieved_density = st.prefill_cost.achieved_density();
  r.requested_density = impl->requested_density(L);
  r.kv_cache_bytes = st.cache_bytes();

  const std::vector<int64_t> stops = mc.eos_token_ids;
  for (int64_t i = 0; i < ctx.cfg.warmup; ++i) model::greedy_generate(m.llama, s.prompt, 2, stops, ctx.device);
  const PeakMemory mem(ctx.device);
  Timing ttft, itl;
  std::vector<double> items;
  nlohmann::json outcomes = nlohmann::json::array(), first_details;
  std::string first_stop;
  for (const auto& sample : g.samples) {
    if (sample.skipped) {
      outcomes.push_back({{"record", sample.record}, {"skipped", true}, {"original_tokens", sample.original_tokens}});
      continue;
    }
    // The first prompt is timed `repeats` times; in files of many prompts, each other one once.
    const int64_t runs = &sample == &s ? ctx.cfg.repeats : 1;
    model::Generation gen;
    for (int64_t k = 0; k < runs; ++k) {
      gen = model::greedy_generate(m.llama, sample.prompt, task.max_new_tokens(sample), stops, ctx.device);
      ttft.ms.push_back(gen.ttft_ms);
      itl.ms.insert(itl.ms.end(), gen.itl_ms.begin(), gen.itl_ms.end());
    }
    const tasks::Score score = task.score(sample, tok.decode(gen.ids));
    items.insert(items.end(), score.item_scores.begin(), score.item_scores.end());
    nlohmann::json details = score.details;
    std::string ids;
    for (int64_t id : sample.prompt) ids += std::to_string(id) + ",";
    details["prompt_hash"] = hash_hex(ids);
    details["prompt_tokens"] = static_cast<int64_t>(sample.prompt.size());
    details["stop"] = gen.stop;
    if (&sample == &s) first_details = details;
    outcomes.push_back(details);
  }
  r.peak_mem_bytes = mem.peak_bytes();
  r.mem_kind = mem.kind();
  r.latency_ms_median = ttft.median();
  r.latency_ms_min = ttft.min();
  r.latency_ms_max = ttft.max();
  r.latency_repeats = static_cast<int64_t>(ttft.ms.size());
  if (!itl.ms.empty()) r.decode_ms_median = itl.median();
  r.decode_steps = static_cast<int64_t>(itl.ms.size());
  double sum = 0;
  for (double x : items) sum += x;
  r.accuracy = sum / static_cast<double>(items.size());
  r.n_scored = static_cast<int64_t>(items.size());
  nlohmann::json extra = g.samples.size() == 1 ? first_details : nlohmann::json{{"samples", outcomes}};
  extra["item_scores"] = items;
  extra["needle_token"] = s.needle_token;
  extra["model"] = ctx.model_dir;
  extra["attention_plan"] = r.impl;
  r.extra_json = extra.dump();
  r.backend = "model:" + std::string(ctx.device.is_cuda() ? "cuda" : "cpu");
  r.status = "ok";
}

void release_device_memory(const at::Device& device) {
  if (device.is_cuda()) at::accelerator::emptyCache();
}

}  // namespace

RunSummary run_sweep(const RunConfig& cfg, const RunOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  at::NoGradGuard no_grad;
  Context ctx{cfg, resolve_device(cfg.device), at::kFloat, "", 0, options.db_path, "", "", nullptr};
  ctx.dtype = resolve_dtype(cfg.dtype, ctx.device);
  ctx.device_name = device_name(ctx.device);

  std::vector<TaskHandle> task_objs;
  bool any_model_task = false;
  for (const auto& t : cfg.tasks) {
    task_objs.push_back(make_handle(t));
    any_model_task |= task_objs.back().model != nullptr;
  }
  if (any_model_task) {
    ctx.model_dir = cfg.model.empty() ? default_model_dir() : cfg.model;
    datasets::Tokenizer::load(ctx.model_dir);  // fails early, naming the directory
    model::LlamaConfig::load(ctx.model_dir);
    ctx.model_id = model_identity(ctx.model_dir);
  }

  store::Store db(options.db_path);
  store::RunInfo info;
  info.started_at = utc_now();
  info.config_json = cfg.to_json().dump();
  info.commit = provenance().commit;
  info.lcb_version = provenance().lcb_version;
  info.torch_version = provenance().torch_version;
  info.device_name = ctx.device_name;
  info.build_type = provenance().build_type;
  info.host = provenance().host;
  info.command = options.command_line;
  ctx.run_id = db.begin_run(info);
  const std::set<std::string> finished = db.finished_keys(/*include_failed=*/!options.retry_failed);

  RunSummary sum;
  sum.run_id = ctx.run_id;
  sum.total = static_cast<int64_t>(cfg.tasks.size() * cfg.lengths.size() * cfg.seeds.size() * cfg.depths.size() *
                                   cfg.impls.size());
  Progress progress(sum.total, options.quiet);

  for (size_t ti = 0; ti < cfg.tasks.size(); ++ti) {
    const TaskHandle& task = task_objs[ti];
    for (int64_t L : cfg.lengths)
      for (int64_t seed : cfg.seeds)
        for (double depth : cfg.depths) {
          std::vector<std::pair<CellSpec, std::string>> pending;
          for (const auto& impl : cfg.impls) {
            CellSpec c{impl, cfg.tasks[ti], L, seed, depth};
            const std::string key = cell_key(ctx, c, task);
            sum.keys.insert(key);
            if (finished.count(key)) {
              ++sum.skipped;
              progress.skipped(1);
            } else {
              pending.emplace_back(c, key);
            }
          }
          if (pending.empty()) continue;
          Group g;
          for (const auto& [c, key] : pending) {
            store::CellRecord r = base_record(ctx, c, task, key);
            {
              try {
                if (task.model) {
                  run_model_cell(ctx, *task.model, g, r);
                } else {
                  run_cell(ctx, *task.attention, g, r);
                }
              } catch (const c10::OutOfMemoryError& e) {
                r = base_record(ctx, c, task, key);
                r.status = "oom";
                r.message = first_line(e.what());
                g.dense_out = at::Tensor();
                g.dense_logits = at::Tensor();
                release_device_memory(ctx.device);
              } catch (const std::exception& e) {
                r = base_record(ctx, c, task, key);
                r.status = "error";
                r.message = first_line(e.what());
              }
            }
            r.finished_at = utc_now();
            db.put_cell(r);
            if (r.status == "ok") ++sum.ok;
            else if (r.status == "unsupported") ++sum.unsupported;
            else if (r.status == "oom") ++sum.oom;
            else ++sum.error;
            progress.done(c.impl + " L=" + std::to_string(L) + " d=" + format_number(depth) + " s=" + std::to_string(seed),
                          r.status);
          }
        }
  }
  progress.finish();
  db.finish_run(ctx.run_id, utc_now());
  sum.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return sum;
}

}  // namespace lcb::harness
