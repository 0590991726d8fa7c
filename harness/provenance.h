// Where a result came from: code commit, library versions, device, build, time; and the cell key
// that identifies a result by everything that changes it.
#pragma once

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <string>

namespace lcb::harness {

struct Provenance {
  std::string commit;         // git commit of the source tree, "-dirty" when it has local changes
  std::string lcb_version;
  std::string torch_version;
  std::string build_type;
  std::string host;
};

const Provenance& provenance();

std::string device_name(const at::Device& device);  // "NVIDIA H200" or the CPU model
std::string utc_now();                              // ISO-8601, seconds
std::string hash_hex(const std::string& text);      // 64-bit FNV-1a of text, 16 hex digits

// Single-quotes a word for a POSIX shell when needed.
std::string shell_quote(const std::string& s);

#ifdef LCB_WITH_CUDA
std::string cuda_device_name(int index);  // harness/cuda_info.cpp
#endif

}  // namespace lcb::harness
