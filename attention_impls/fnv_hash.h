// 64-bit FNV-1a of a byte string as 16 hex digits: cell keys, prompt and tokenizer hashes. Lives in
// the lowest library so every folder can use the one definition.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace lcb {

inline std::string fnv1a_hex(const std::string& bytes) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

}  // namespace lcb
