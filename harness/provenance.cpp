#include "harness/provenance.h"

#include "attention_impls/fnv_hash.h"

#include <torch/version.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <memory>

#ifndef LCB_SOURCE_DIR
#define LCB_SOURCE_DIR "."
#endif
#ifndef LCB_BUILD_TYPE
#define LCB_BUILD_TYPE "unknown"
#endif
#ifndef LCB_VERSION
#define LCB_VERSION "0"
#endif

namespace lcb::harness {
namespace {

std::string run_command(const std::string& cmd) {
  std::array<char, 256> buf{};
  std::string out;
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(cmd.c_str(), "r"), pclose);
  if (!pipe) return out;
  while (fgets(buf.data(), buf.size(), pipe.get())) out += buf.data();
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

std::string git_commit() {
  const std::string dir = shell_quote(LCB_SOURCE_DIR);
  const std::string head = run_command("git -C " + dir + " rev-parse --short=12 HEAD 2>/dev/null");
  if (head.empty()) return "unknown";
  const std::string dirty =
      run_command("git -C " + dir + " status --porcelain --untracked-files=no 2>/dev/null | head -n1");
  return dirty.empty() ? head : head + "-dirty";
}

}  // namespace

const Provenance& provenance() {
  static const Provenance p = [] {
    Provenance v;
    v.commit = git_commit();
    v.lcb_version = LCB_VERSION;
    v.torch_version = TORCH_VERSION;
    v.build_type = LCB_BUILD_TYPE;
    std::array<char, 256> host{};
    gethostname(host.data(), host.size() - 1);
    v.host = host.data();
    return v;
  }();
  return p;
}

std::string device_name(const at::Device& device) {
#ifdef LCB_WITH_CUDA
  if (device.is_cuda()) return cuda_device_name(device.has_index() ? device.index() : 0);
#endif
  if (device.is_cuda()) return "cuda";
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return "CPU " + line.substr(line.find_first_not_of(' ', colon + 1));
    }
  }
  return "CPU";
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string hash_hex(const std::string& text) {
  return fnv1a_hex(text);
}

std::string shell_quote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=,:") ==
                        std::string::npos) {
    return s;
  }
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

}  // namespace lcb::harness
