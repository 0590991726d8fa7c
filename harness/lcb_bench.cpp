// lcb_bench: Google Benchmark timings of the attention implementations on CUDA, prefill and
// decode, against at::scaled_dot_product_attention timed right before each, in the same process.
//
// Every benchmark first checks its implementation against the reference (the same spec with
// Options::reference, bf16 relative L2 < 1e-2, at min(L, --verify-len) tokens; causal dense
// through the interval kernel is checked against SDPA at full length) and refuses to time on a
// mismatch; an implementation without a CUDA kernel is reported as such, not timed. Timing, per
// block of calls: untimed calls for --warmup-ms (at least two), then CUDA events around each
// call, the L2 cache flushed before each by a 256 MB read (--l2-flush=write: a 256 MB memset, as
// before 2026-11-29, which leaves L2's size of dirty lines for the timed call to write back). Each
// benchmark times a block of SDPA calls on the same shape and mode, then its own block (before
// 2026-11-29: SDPA once per process, two warm-up calls). Counters report medians: ms, TFLOPs
// (effective: 4·D per visible query-key pair), GBps (q, k, v or the cache read once, output
// written once), sdpa_ms and x_sdpa (sdpa_ms / ms), and for DGA, topk_block and topk prefill
// select_ms / attend_ms (selection and attention timed apart; topk's attend is the total less the
// select, whose five passes are listed; DGA's come from one forward's stage marks, each stage
// also a counter <stage>_ms and in the note with its share), and for sparse prefills density (the
// pairs computed over causal dense's, from cost()), and for decode bare_read_ms (ATen's sum over
// as many bytes as the step reads: a plain streaming read of them to compare with, not a strict
// bound). A table of the medians is printed last.
//
//   lcb_bench [--lengths=4096,16384,65536,131072] [--modes=prefill,decode] [--heads=mha,gqa]
//             [--impls="sdpa;dense-interval;swa:window=4096;..."] [--verify-len=4096]
//             [--batch=1] [--l2-flush=read|write] [--warmup-ms=500] [--no-sdpa] [Google Benchmark flags]
// --no-sdpa: no SDPA block before each benchmark (no x_sdpa), for profilers and power traces.
#include "attention_impls/topk_block.h"
#include "attention_impls/fast.h"
#include "attention_impls/reference.h"
#include "attention_impls/registry.h"

#include <ATen/cuda/CUDAEvent.h>
#include <benchmark/benchmark.h>
#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

namespace {

using namespace lcb;

struct Settings {
  std::vector<int64_t> lengths = {4096, 16384, 65536, 131072};
  std::vector<std::string> modes = {"prefill", "decode"};
  std::vector<std::string> heads = {"mha", "gqa"};
  std::vector<std::string> impls = {"sdpa", "dense-interval", "swa:window=4096", "dga:m=16,gamma=0.1",
                                    "topk:k=2048", "topk_block:block=64,k=100"};
  int64_t verify_len = 4096;
  int64_t batch = 1;
  bool sdpa = true;  // time SDPA alongside (--no-sdpa: not, for profilers and power traces)
};

constexpr int64_t kQHeads = 32, kHeadDim = 128;
const at::Device kCuda(at::kCUDA, 0);

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string part; std::getline(ss, part, sep);) {
    if (!part.empty()) out.push_back(part);
  }
  return out;
}

int64_t kv_heads_of(const std::string& heads) { return heads == "mha" ? kQHeads : 8; }
double softmax_scale() { return 1.0 / std::sqrt(static_cast<double>(kHeadDim)); }

double rel_l2(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor x = a.to(at::kDouble), y = b.to(at::kDouble);
  const double num = (x - y).norm().item<double>(), den = y.norm().item<double>();
  return den == 0 ? num : num / den;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0 : (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
}

// Seeded bf16 inputs, cached per shape (the longest ones are GBs).
struct Inputs {
  at::Tensor q, k, v;     // [B, Hq|Hkv, L, D]
  at::Tensor q1, k1, v1;  // one more token, for decode
};
const Inputs& inputs(int64_t B, int64_t hkv, int64_t L) {
  static std::map<std::tuple<int64_t, int64_t, int64_t>, Inputs> cache;
  const auto key = std::make_tuple(B, hkv, L);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  at::manual_seed(static_cast<uint64_t>(1234 + L + hkv));
  const auto opt = at::TensorOptions().dtype(at::kBFloat16).device(kCuda);
  Inputs in{at::randn({B, kQHeads, L, kHeadDim}, opt), at::randn({B, hkv, L, kHeadDim}, opt),
            at::randn({B, hkv, L, kHeadDim}, opt),     at::randn({B, kQHeads, 1, kHeadDim}, opt),
            at::randn({B, hkv, 1, kHeadDim}, opt),     at::randn({B, hkv, 1, kHeadDim}, opt)};
  return cache.emplace(key, std::move(in)).first->second;
}

// How the L2 cache is emptied before each timed call: "read" (the default) reads 256 MB, which
// leaves L2 holding clean lines; "write" zeroes 256 MB, which leaves about L2's size of dirty
// lines that the timed call then pays to write back (5-6 µs on the H200, BENCHMARKS.md).
std::string& l2_flush_mode() {
  static std::string mode = "read";
  return mode;
}

void flush_l2() {
  static at::Tensor scratch = at::zeros({64 << 20}, at::TensorOptions().dtype(at::kFloat).device(kCuda));
  if (l2_flush_mode() == "write") {
    scratch.zero_();
  } else {
    scratch.sum();
  }
}

// Untimed calls before a timed block: at least two, and until this many milliseconds have
// passed. The H200 lowers its SM clock for about half a second when a heavy kernel starts
// (1665-1770 MHz, then 1965-1980; BENCHMARKS.md), and a light kernel right after a heavy one runs
// at the heavy one's clocks: each block is timed once its own kernel has settled them.
double& warmup_ms() {
  static double ms = 500;
  return ms;
}

// Milliseconds per call of fn(): the warm-up, then one timed call per state iteration (or `reps`
// calls without a state), the L2 cache flushed before each.
std::vector<double> time_calls(const std::function<void()>& fn, benchmark::State* state, int reps) {
  const auto t0 = std::chrono::steady_clock::now();
  for (int n = 0; n < 2 || std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() <
                               warmup_ms();
       ++n) {
    fn();
    torch::cuda::synchronize();
  }
  at::cuda::CUDAEvent start(cudaEventDefault), stop(cudaEventDefault);
  std::vector<double> ms;
  auto one = [&] {
    flush_l2();
    start.record();
    fn();
    stop.record();
    stop.synchronize();
    ms.push_back(start.elapsed_time(stop));
  };
  if (state != nullptr) {
    for (auto _ : *state) {
      one();
      state->SetIterationTime(ms.back() / 1e3);
    }
  } else {
    for (int i = 0; i < reps; ++i) one();
  }
  return ms;
}

int reps_for(const std::string& mode, int64_t L) {
  if (mode == "decode") return 30;
  return L <= 16384 ? 10 : (L <= 65536 ? 5 : 3);
}

std::function<void()> sdpa_call(const std::string& mode, const Inputs& in) {
  if (mode == "prefill") {
    return [&in] { at::scaled_dot_product_attention(in.q, in.k, in.v, {}, 0.0, true, softmax_scale(), true); };
  }
  return [&in] { at::scaled_dot_product_attention(in.q1, in.k, in.v, {}, 0.0, false, softmax_scale(), true); };
}

// A reference point for a decode step that reads `bytes`: ATen's sum over a bf16 tensor of as many
// bytes (one streaming read, nothing else), measured once per size. Not a strict bound: over a
// 2 GB cache SDPA's decode reads faster than this sum.
double bare_read_ms(double bytes) {
  static std::map<int64_t, double> cache;
  const auto n = static_cast<int64_t>(bytes / 2);
  if (auto it = cache.find(n); it != cache.end()) return it->second;
  const at::Tensor x = at::ones({n}, at::TensorOptions().dtype(at::kBFloat16).device(kCuda));
  return cache[n] = median(time_calls([&x] { x.sum(); }, nullptr, 30));
}

at::Tensor causal_lo(int64_t L) { return at::arange(L, at::TensorOptions().dtype(at::kLong).device(kCuda)); }
at::Tensor causal_hi(int64_t L) {
  return at::full({L}, attn::ref::kNever, at::TensorOptions().dtype(at::kLong).device(kCuda));
}

// Empty when the implementation's fast path matches its reference at Lv tokens; otherwise why
// it is not timed.
std::string verify(const std::string& spec, const std::string& mode, int64_t B, int64_t hkv, int64_t Lv) {
  static std::map<std::string, std::string> cache;
  const std::string key = spec + "|" + mode + "|" + std::to_string(B) + "|" + std::to_string(hkv) + "|" + std::to_string(Lv);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  const Inputs& in = inputs(B, hkv, Lv);
  const auto impl = attn::make_attention(spec);
  attn::Options ref;
  ref.reference = true;
  ref.chunk_rows = 512;
  std::string verdict;
  const attn::Output fast = impl->forward(in.q, in.k, in.v, {});
  if (fast.backend == "reference") {
    verdict = "no CUDA kernel for " + spec + " yet (reference only): not timed";
  } else if (mode == "decode" && impl->family() == "topk") {
    verdict = "exact topk decodes one token on its reference (one row of scores): not timed";
  } else {
    double err = 0;
    if (mode == "prefill") {
      err = rel_l2(fast.out, impl->forward(in.q, in.k, in.v, ref).out);
    } else {
      std::unique_ptr<attn::Cache> fc, rc;
      impl->forward(in.q, in.k, in.v, {}, &fc);
      impl->forward(in.q, in.k, in.v, ref, &rc);
      err = rel_l2(impl->decode(in.q1, in.k1, in.v1, *fc, {}), impl->decode(in.q1, in.k1, in.v1, *rc, ref));
    }
    if (!(err < 1e-2)) verdict = "mismatch against the reference at L=" + std::to_string(Lv) + ": rel L2 " + std::to_string(err);
  }
  return cache[key] = verdict;
}

struct Row {
  std::string name;
  double ms = 0, x_sdpa = 0, tflops = 0, gbps = 0;
  std::string note;
};
std::vector<Row>& rows() {
  static std::vector<Row> r;
  return r;
}

// A two-stage prefill's stage medians: counters, and the table row's note.
std::string stage_note(benchmark::State& st, double select_ms, double attend_ms) {
  st.counters["select_ms"] = select_ms;
  st.counters["attend_ms"] = attend_ms;
  char buf[96];
  std::snprintf(buf, sizeof buf, "select %.3f ms (%.0f%%), attend %.3f ms", select_ms,
                100 * select_ms / (select_ms + attend_ms), attend_ms);
  return buf;
}

// A pipeline's stage medians over runs (StageTimer::stages() of each): counters per stage
// (<stage>_ms on the GPU, <stage>_host_ms on the host), select_ms / attend_ms (attend: the tile
// summaries and the attention), and the table row's note: each stage's median and share of their
// sum.
std::string pipeline_note(benchmark::State& st, const std::vector<std::vector<attn::fast::StageTimer::Stage>>& runs) {
  if (runs.empty() || runs.front().empty()) return "";
  const auto& first = runs.front();
  std::vector<double> med(first.size()), host(first.size());
  for (size_t i = 0; i < first.size(); ++i) {
    std::vector<double> ms, host_ms;
    for (const auto& r : runs) {
      if (r.size() != first.size() || r[i].name != first[i].name) return "stages differ between runs";
      ms.push_back(r[i].ms);
      host_ms.push_back(r[i].host_ms);
    }
    med[i] = median(ms);
    host[i] = median(host_ms);
  }
  double total = 0, attend = 0;
  for (size_t i = 0; i < med.size(); ++i) {
    total += med[i];
    if (first[i].name == "tile summaries" || first[i].name == "attention") attend += med[i];
  }
  st.counters["select_ms"] = total - attend;
  st.counters["attend_ms"] = attend;
  std::string note;
  for (size_t i = 0; i < med.size(); ++i) {
    std::string key = first[i].name;
    std::replace(key.begin(), key.end(), ' ', '_');
    st.counters[key + "_ms"] = med[i];
    st.counters[key + "_host_ms"] = host[i];
    char buf[96];
    std::snprintf(buf, sizeof buf, "%s%s %.3f (%.0f%%)", i ? ", " : "", first[i].name.c_str(), med[i],
                  total > 0 ? 100 * med[i] / total : 0.0);
    note += buf;
  }
  return note + " ms";
}

void run_one(benchmark::State& st, const std::string& name, const Settings& cfg, const std::string& mode,
             const std::string& heads, int64_t L, const std::string& spec) {
  const int64_t B = cfg.batch, hkv = kv_heads_of(heads);
  const Inputs& in = inputs(B, hkv, L);
  const double scale = softmax_scale();
  const double elem = 2.0;
  attn::Shape shape{B, kQHeads, hkv, mode == "prefill" ? L : 1, L, kHeadDim, 2};
  const attn::Cost dense_cost = *attn::make_attention("dense")->cost(shape);

  std::function<void()> fn;
  double flops = dense_cost.attention_flops, bytes = dense_cost.bytes;
  std::unique_ptr<attn::Attention> impl;
  std::unique_ptr<attn::Cache> cache;
  std::string note;
  std::vector<double> select_levels;  // topk: ms of the select's first 1 .. 5 passes
  double density = 1;                 // prefill: kept pairs / causal dense's pairs
  if (spec == "sdpa") {
    fn = sdpa_call(mode, in);
  } else if (spec == "dense-interval") {
    if (mode == "prefill") {
      const at::Tensor lo = causal_lo(L), hi = causal_hi(L);
      const double err = rel_l2(attn::fast::interval_attention(in.q, in.k, in.v, lo, hi, 0, scale),
                                at::scaled_dot_product_attention(in.q, in.k, in.v, {}, 0.0, true, scale, true));
      if (!(err < 1e-2)) {
        st.SkipWithError(("mismatch against SDPA: rel L2 " + std::to_string(err)).c_str());
        return;
      }
      fn = [&in, lo, hi, scale] { attn::fast::interval_attention(in.q, in.k, in.v, lo, hi, 0, scale); };
    } else {
      const double err = rel_l2(attn::fast::decode_attention(in.q1, {{in.k, in.v}}, scale),
                                at::scaled_dot_product_attention(in.q1, in.k, in.v, {}, 0.0, false, scale, true));
      if (!(err < 1e-2)) {
        st.SkipWithError(("mismatch against SDPA: rel L2 " + std::to_string(err)).c_str());
        return;
      }
      fn = [&in, scale] { attn::fast::decode_attention(in.q1, {{in.k, in.v}}, scale); };
    }
  } else {
    const std::string why = verify(spec, mode, B, hkv, std::min(L, cfg.verify_len));
    if (!why.empty()) {
      st.SkipWithError(why.c_str());
      return;
    }
    impl = attn::make_attention(spec);
    if (mode == "prefill") {
      const attn::Output o = impl->forward(in.q, in.k, in.v, {});
      flops = o.cost.attention_flops;
      bytes = o.cost.bytes;
      density = o.cost.achieved_density();
      fn = [&in, &impl] { impl->forward(in.q, in.k, in.v, {}); };
      if (impl->family() == "dga") {  // each stage of one forward, from the marks it records
        std::vector<std::vector<attn::fast::StageTimer::Stage>> runs;
        for (int i = 0; i < 5; ++i) {
          flush_l2();
          attn::fast::StageTimer timer;
          impl->forward(in.q, in.k, in.v, {});
          runs.push_back(timer.stages());
        }
        note = pipeline_note(st, runs);
      } else if (impl->family() == "topk_block") {
        at::Tensor sel;
        const double sel_ms = median(time_calls([&] { sel = attn::topk_block_plan(*impl, in.q, in.k, {}); }, nullptr, 5));
        const at::Tensor lo = causal_lo(L), hi = causal_hi(L);
        const double att = median(time_calls(
            [&] { attn::fast::interval_attention(in.q, in.k, in.v, lo, hi, 0, scale, sel); }, nullptr, 5));
        note = stage_note(st, sel_ms, att);
      } else if (impl->family() == "topk" && o.backend == "cuda-topk") {  // the select's passes, cumulative
        const auto top_k = static_cast<int64_t>(std::llround(impl->requested_density(L) * static_cast<double>(L)));
        for (int64_t levels = 1; levels <= 5; ++levels) {
          select_levels.push_back(
              median(time_calls([&] { attn::fast::topk_select(in.q, in.k, top_k, levels); }, nullptr, 3)));
        }
      }
    } else {
      impl->forward(in.q, in.k, in.v, {}, &cache);
      const double keys = static_cast<double>(cache->bytes()) / (2.0 * elem * B * hkv * kHeadDim);
      flops = 4.0 * B * kQHeads * kHeadDim * keys;
      bytes = static_cast<double>(cache->bytes()) + 2.0 * elem * B * kQHeads * kHeadDim;
      fn = [&in, &impl, &cache] { impl->decode(in.q1, in.k1, in.v1, *cache, {}); };
    }
  }
  // SDPA's block right before this one, on the same inputs.
  const double base = cfg.sdpa ? median(time_calls(sdpa_call(mode, in), nullptr, reps_for(mode, L))) : 0.0;
  const std::vector<double> ms = time_calls(fn, &st, 0);
  const double med = median(ms);
  if (cfg.sdpa) st.counters["sdpa_ms"] = base;
  st.counters["ms"] = med;
  st.counters["TFLOPs"] = flops / (med * 1e-3) / 1e12;
  st.counters["GBps"] = bytes / (med * 1e-3) / 1e9;
  if (cfg.sdpa) st.counters["x_sdpa"] = base / med;
  if (!select_levels.empty()) {
    const double sel = select_levels.back();
    note = stage_note(st, sel, med - sel) + "; passes";
    for (size_t i = 0; i < select_levels.size(); ++i) {
      char buf[32];
      std::snprintf(buf, sizeof buf, " %.2f", select_levels[i] - (i ? select_levels[i - 1] : 0.0));
      note += buf;
    }
  }
  if (mode == "decode") {  // how near the step comes to a bare read of its bytes
    const double bare = bare_read_ms(bytes);
    st.counters["bare_read_ms"] = bare;
    char buf[80];
    std::snprintf(buf, sizeof buf, "%sa bare read %.4f ms (%.2f TB/s)", note.empty() ? "" : "; ", bare,
                  bytes / (bare * 1e-3) / 1e12);
    note += buf;
  }
  if (density < 1) {  // what a sparse implementation computes, as a share of causal dense
    char buf[48];
    std::snprintf(buf, sizeof buf, "%sdensity %.1f%%", note.empty() ? "" : "; ", 100 * density);
    note += buf;
    st.counters["density"] = density;
  }
  rows().push_back({name, med, base / med, flops / (med * 1e-3) / 1e12, bytes / (med * 1e-3) / 1e9, note});
}

Settings parse(int& argc, char** argv) {
  Settings s;
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const char* flag) -> const char* {
      const size_t n = std::strlen(flag);
      return a.compare(0, n, flag) == 0 ? argv[i] + n : nullptr;
    };
    if (const char* v = value("--lengths=")) {
      s.lengths.clear();
      for (const auto& x : split(v, ',')) s.lengths.push_back(std::stoll(x));
    } else if (const char* v = value("--modes=")) {
      s.modes = split(v, ',');
    } else if (const char* v = value("--heads=")) {
      s.heads = split(v, ',');
    } else if (const char* v = value("--impls=")) {
      s.impls = split(v, ';');
    } else if (const char* v = value("--verify-len=")) {
      s.verify_len = std::stoll(v);
    } else if (const char* v = value("--batch=")) {
      s.batch = std::stoll(v);
    } else if (const char* v = value("--warmup-ms=")) {
      char* end = nullptr;
      warmup_ms() = std::strtod(v, &end);
      if (end == v || *end != '\0' || !(warmup_ms() >= 0)) {
        throw std::invalid_argument(std::string("--warmup-ms: '") + v + "' (accepted: milliseconds >= 0)");
      }
    } else if (a == "--no-sdpa") {
      s.sdpa = false;
    } else if (const char* v = value("--l2-flush=")) {
      l2_flush_mode() = v;
    } else {
      rest.push_back(argv[i]);
    }
  }
  for (const auto& m : s.modes) {
    if (m != "prefill" && m != "decode") throw std::invalid_argument("--modes: '" + m + "' (accepted: prefill, decode)");
  }
  for (const auto& h : s.heads) {
    if (h != "mha" && h != "gqa") throw std::invalid_argument("--heads: '" + h + "' (accepted: mha = 32/32, gqa = 32/8)");
  }
  if (l2_flush_mode() != "read" && l2_flush_mode() != "write") {
    throw std::invalid_argument("--l2-flush: '" + l2_flush_mode() + "' (accepted: read, write)");
  }
  for (const auto& spec : s.impls) {
    if (spec == "sdpa" || spec == "dense-interval") continue;
    try {
      attn::canonical_spec(spec);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(std::string("--impls: ") + e.what() + "; or sdpa, dense-interval");
    }
  }
  argc = static_cast<int>(rest.size());
  for (int i = 0; i < argc; ++i) argv[i] = rest[i];
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  Settings cfg;
  try {
    cfg = parse(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lcb_bench: %s\n", e.what());
    return 2;
  }
  if (!torch::cuda::is_available() || !attn::fast::built()) {
    std::printf("lcb_bench: no CUDA device or no CUDA kernels in this build: nothing to time\n");
    return 0;
  }
  for (const auto& mode : cfg.modes) {
    for (const auto& heads : cfg.heads) {
      for (int64_t L : cfg.lengths) {
        for (const auto& spec : cfg.impls) {
          const std::string name = mode + "/" + heads + "/L=" + std::to_string(L) + "/" + spec;
          benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& st) { run_one(st, name, cfg, mode, heads, L, spec); })
              ->UseManualTime()
              ->Iterations(reps_for(mode, L))
              ->Unit(benchmark::kMillisecond);
        }
      }
    }
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();

  std::printf("\n| benchmark (B=%lld, 32 q heads, hd128, bf16, L2 flushed by a %s) | median ms | x SDPA | TF/s | GB/s | note |\n"
              "|---|---|---|---|---|---|\n",
              static_cast<long long>(cfg.batch), l2_flush_mode().c_str());
  for (const auto& r : rows()) {
    char x[16] = "–";
    if (r.x_sdpa > 0) std::snprintf(x, sizeof x, "%.2f", r.x_sdpa);
    // Four decimals below 1 ms: decode steps take tens of microseconds.
    std::printf("| %s | %.*f | %s | %.0f | %.0f | %s |\n", r.name.c_str(), r.ms < 1 ? 4 : 3, r.ms, x, r.tflops, r.gbps,
                r.note.c_str());
  }
  return 0;
}
