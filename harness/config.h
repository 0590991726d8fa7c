// Run configuration: what `lcb run` expands into cells (impl × task × length × depth × seed).
// Read from a JSON file and/or command-line flags; validated completely before any work starts.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace lcb::harness {

struct RunConfig {
  std::string name = "run";
  std::vector<std::string> impls;  // canonical attention specs
  std::vector<std::string> tasks = {"needle_qkv"};
  std::vector<int64_t> lengths;
  std::vector<double> depths = {0.5};
  std::vector<int64_t> seeds = {0};
  int64_t batch = 1;
  std::string dtype = "auto";   // auto (bfloat16 on cuda, float32 on cpu), float32, bfloat16, float16, float64
  std::string device = "auto";  // auto, cpu, cuda
  int64_t repeats = 3;          // timed repeats per cell (median reported)
  int64_t warmup = 1;           // untimed runs before timing
  int64_t chunk_rows = 256;     // query rows per chunk in reference paths
  std::string model;            // model directory for model tasks (default: the embedded model)

  nlohmann::json to_json() const;
};

// Every accepted field, in the order `to_json` writes them.
const std::vector<std::string>& config_fields();

// Parses and validates; `source` (a file name or "command line") prefixes every error, which
// names the field and what is accepted. Specs are canonicalised. Throws std::invalid_argument.
RunConfig parse_config(const nlohmann::json& j, const std::string& source);
RunConfig load_config_file(const std::string& path);

// Checks a config (also one assembled from flags): specs parse, lists are non-empty, values in
// range. Canonicalises specs in place.
void validate_config(RunConfig& c, const std::string& source);

}  // namespace lcb::harness
