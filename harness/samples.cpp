#include "harness/samples.h"

#include "harness/provenance.h"
#include "harness/runner.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>

namespace lcb::harness {
namespace {

// mkdir -p with POSIX calls (libtorch's exported std::filesystem symbols are unsafe to call).
bool make_dirs(const std::string& path) {
  for (size_t p = path.find('/', 1); ; p = path.find('/', p + 1)) {
    const std::string part = path.substr(0, p);
    if (mkdir(part.c_str(), 0755) != 0 && errno != EEXIST) return false;
    if (p == std::string::npos) return true;
  }
}

}  // namespace

// Generated prompts are cached on disk by (task, task version, length, depth, seed, record,
// tokenizer): $LCB_CACHE_DIR, else ~/.cache/lcb/samples. A missing or unreadable entry is generated
// again; entries are written to a temporary name and renamed, so a killed run leaves none half-written.
std::string sample_cache_dir() {
  if (const char* d = std::getenv("LCB_CACHE_DIR")) return d;
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "/tmp") + "/.cache/lcb/samples";
}

datasets::TextSample cached_sample(const tasks::ModelTask& task, const tasks::CellParams& cell, const datasets::Tokenizer& tok,
                                   int64_t index) {
  const std::string key = hash_hex(nlohmann::json{{"task", task.spec()}, {"version", task.version()}, {"length", cell.length},
                                                  {"depth", cell.depth}, {"seed", cell.seed}, {"record", index},
                                                  {"tokenizer", tok.hash()}}.dump());
  const std::string dir = sample_cache_dir(), path = dir + "/" + key + ".json";
  if (task.cacheable()) {
    std::ifstream in(path);
    const auto j = in ? nlohmann::json::parse(in, nullptr, false) : nlohmann::json();
    if (j.is_object() && j.contains("prompt")) {
      datasets::TextSample s;
      s.prompt = j["prompt"].get<std::vector<int64_t>>();
      s.answer = j["answer"];
      s.expected = j["expected"].get<std::vector<std::string>>();
      s.answer_ids = j["answer_ids"].get<std::vector<int64_t>>();
      s.needle_token = j["needle_token"];
      s.record = j["record"];
      s.original_tokens = j["original_tokens"];
      s.truncated = j["truncated"];
      s.skipped = j["skipped"];
      s.classes = j["classes"].get<std::vector<std::string>>();
      return s;
    }
  }
  datasets::TextSample s = task.make_at(cell, tok, index);
  if (task.cacheable() && make_dirs(dir)) {
    const std::string tmp = path + ".tmp" + std::to_string(getpid());
    std::ofstream(tmp) << nlohmann::json{{"prompt", s.prompt},         {"answer", s.answer},
                                         {"expected", s.expected},     {"answer_ids", s.answer_ids},
                                         {"needle_token", s.needle_token}, {"record", s.record},
                                         {"original_tokens", s.original_tokens}, {"truncated", s.truncated},
                                         {"skipped", s.skipped},       {"classes", s.classes}}.dump();
    std::rename(tmp.c_str(), path.c_str());
  }
  return s;
}


std::vector<nlohmann::json> export_samples(const RunConfig& cfg) {
  const std::string dir = cfg.model.empty() ? default_model_dir() : cfg.model;
  const datasets::Tokenizer tok = datasets::Tokenizer::load(dir);
  std::vector<nlohmann::json> out;
  for (const auto& spec : cfg.tasks) {
    if (tasks::task_kind(spec) != tasks::TaskKind::Model) {
      throw std::invalid_argument("lcb generate exports text prompts; task '" + spec + "' works on raw q/k/v");
    }
    const auto task = tasks::make_model_task(spec);
    for (int64_t L : cfg.lengths)
      for (int64_t seed : cfg.seeds)
        for (double depth : cfg.depths)
          for (int64_t i = 0; i < task->samples(); ++i) {
            const datasets::TextSample s = cached_sample(*task, tasks::CellParams{L, depth, seed, 1}, tok, i);
            out.push_back({{"task", spec},
                           {"length", L},
                           {"depth", depth},
                           {"seed", seed},
                           {"record", s.record},
                           {"prompt", tok.decode(s.prompt)},
                           {"prompt_tokens", static_cast<int64_t>(s.prompt.size())},
                           {"answer", s.answer},
                           {"expected", s.expected},
                           {"needle_token", s.needle_token},
                           {"truncated", s.truncated},
                           {"skipped", s.skipped},
                           {"tokenizer", tok.hash()}});
          }
  }
  return out;
}

}  // namespace lcb::harness
