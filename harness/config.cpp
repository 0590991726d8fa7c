#include "harness/config.h"

#include "attention_impls/registry.h"
#include "tasks/task.h"

#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

namespace lcb::harness {

const std::vector<std::string>& config_fields() {
  static const std::vector<std::string> fields = {"name",  "impls",  "tasks",   "lengths", "depths",    "seeds",
                                                  "batch", "dtype",  "device",  "repeats", "warmup", "chunk_rows", "model"};
  return fields;
}

nlohmann::json RunConfig::to_json() const {
  return {{"name", name},     {"impls", impls},   {"tasks", tasks},     {"lengths", lengths},
          {"depths", depths}, {"seeds", seeds},   {"batch", batch},     {"dtype", dtype},
          {"device", device}, {"repeats", repeats}, {"warmup", warmup}, {"chunk_rows", chunk_rows},
          {"model", model}};
}

namespace {

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw std::invalid_argument(source + ": " + what);
}

std::string type_of(const nlohmann::json& v) {
  return std::string(v.type_name()) + " " + v.dump();
}

std::vector<std::string> string_list(const nlohmann::json& v, const std::string& field, const std::string& source) {
  if (!v.is_array()) fail(source, "field '" + field + "' must be a list of strings, got " + type_of(v));
  std::vector<std::string> out;
  for (const auto& x : v) {
    if (!x.is_string()) fail(source, "field '" + field + "' must be a list of strings; element " + type_of(x) + " is not");
    out.push_back(x.get<std::string>());
  }
  return out;
}

std::vector<int64_t> int_list(const nlohmann::json& v, const std::string& field, const std::string& source) {
  if (!v.is_array()) fail(source, "field '" + field + "' must be a list of integers, got " + type_of(v));
  std::vector<int64_t> out;
  for (const auto& x : v) {
    if (!x.is_number_integer()) fail(source, "field '" + field + "' must be a list of integers; element " + type_of(x) + " is not");
    out.push_back(x.get<int64_t>());
  }
  return out;
}

int64_t integer(const nlohmann::json& v, const std::string& field, const std::string& source) {
  if (!v.is_number_integer()) fail(source, "field '" + field + "' must be an integer, got " + type_of(v));
  return v.get<int64_t>();
}

std::string text(const nlohmann::json& v, const std::string& field, const std::string& source) {
  if (!v.is_string()) fail(source, "field '" + field + "' must be a string, got " + type_of(v));
  return v.get<std::string>();
}

}  // namespace

RunConfig parse_config(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) fail(source, "a run config must be a JSON object, got " + std::string(j.type_name()));
  const auto& fields = config_fields();
  for (const auto& [key, value] : j.items()) {
    if (std::find(fields.begin(), fields.end(), key) == fields.end()) {
      std::string accepted;
      for (const auto& f : fields) accepted += (accepted.empty() ? "" : ", ") + f;
      fail(source, "unknown field '" + key + "'; accepted fields: " + accepted);
    }
  }
  RunConfig c;
  if (j.contains("name")) c.name = text(j["name"], "name", source);
  if (j.contains("impls")) c.impls = string_list(j["impls"], "impls", source);
  if (j.contains("tasks")) c.tasks = string_list(j["tasks"], "tasks", source);
  if (j.contains("lengths")) c.lengths = int_list(j["lengths"], "lengths", source);
  if (j.contains("depths")) {
    const auto& d = j["depths"];
    if (!d.is_array()) fail(source, "field 'depths' must be a list of numbers in [0, 1], got " + type_of(d));
    c.depths.clear();
    for (const auto& x : d) {
      if (!x.is_number()) fail(source, "field 'depths' must be a list of numbers in [0, 1]; element " + type_of(x) + " is not");
      c.depths.push_back(x.get<double>());
    }
  }
  if (j.contains("seeds")) c.seeds = int_list(j["seeds"], "seeds", source);
  if (j.contains("batch")) c.batch = integer(j["batch"], "batch", source);
  if (j.contains("dtype")) c.dtype = text(j["dtype"], "dtype", source);
  if (j.contains("device")) c.device = text(j["device"], "device", source);
  if (j.contains("repeats")) c.repeats = integer(j["repeats"], "repeats", source);
  if (j.contains("warmup")) c.warmup = integer(j["warmup"], "warmup", source);
  if (j.contains("chunk_rows")) c.chunk_rows = integer(j["chunk_rows"], "chunk_rows", source);
  if (j.contains("model")) c.model = text(j["model"], "model", source);
  validate_config(c, source);
  return c;
}

RunConfig load_config_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument("cannot read config file '" + path + "'");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    throw std::invalid_argument("config " + path + ": not valid JSON: " + e.what());
  }
  return parse_config(j, "config " + path);
}

void validate_config(RunConfig& c, const std::string& source) {
  if (c.impls.empty()) fail(source, "field 'impls' must list at least one attention spec (see `lcb list impls`)");
  if (c.tasks.empty()) fail(source, "field 'tasks' must list at least one task (see `lcb list tasks`)");
  if (c.lengths.empty()) fail(source, "field 'lengths' must list at least one context length");
  for (auto& s : c.impls) {
    try {
      s = attn::canonical_spec(s);
    } catch (const std::invalid_argument& e) {
      fail(source, std::string("field 'impls': ") + e.what());
    }
  }
  for (auto& s : c.tasks) {
    try {
      s = tasks::canonical_task(s);
    } catch (const std::invalid_argument& e) {
      fail(source, std::string("field 'tasks': ") + e.what());
    }
  }
  for (int64_t L : c.lengths) {
    if (L < 1) fail(source, "field 'lengths': " + std::to_string(L) + " is not a positive integer");
  }
  for (double d : c.depths) {
    if (!(d >= 0.0 && d <= 1.0)) fail(source, "field 'depths': " + std::to_string(d) + " is outside [0, 1]");
  }
  for (int64_t s : c.seeds) {
    if (s < 0) fail(source, "field 'seeds': " + std::to_string(s) + " is negative; seeds are integers >= 0");
  }
  if (c.batch < 1) fail(source, "field 'batch' must be >= 1, got " + std::to_string(c.batch));
  static const std::set<std::string> dtypes = {"auto", "float32", "bfloat16", "float16", "float64"};
  if (!dtypes.count(c.dtype)) fail(source, "field 'dtype': '" + c.dtype + "' not accepted (auto, float32, bfloat16, float16, float64)");
  if (c.device != "auto" && c.device != "cpu" && c.device != "cuda") {
    fail(source, "field 'device': '" + c.device + "' not accepted (auto, cpu, cuda)");
  }
  if (c.repeats < 1) fail(source, "field 'repeats' must be >= 1, got " + std::to_string(c.repeats));
  if (c.warmup < 0) fail(source, "field 'warmup' must be >= 0, got " + std::to_string(c.warmup));
  if (c.chunk_rows < 1) fail(source, "field 'chunk_rows' must be >= 1, got " + std::to_string(c.chunk_rows));
}

}  // namespace lcb::harness
