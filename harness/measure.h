// Latency and peak memory of a piece of device work. On CUDA: events on the current stream
// (elapsed time between them, after synchronising) and the caching allocator's peak, reset
// before the measured phase. On CPU: a steady clock and the process's peak RSS (VmHWM), reset
// through /proc/self/clear_refs.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace lcb::harness {

struct Timing {
  std::vector<double> ms;  // one per repeat
  double median() const;
  double min() const;
  double max() const;
};

// Runs fn `warmup` times untimed, then `repeats` times timed.
Timing time_on(const at::Device& device, int64_t warmup, int64_t repeats, const std::function<void()>& fn);

class PeakMemory {
 public:
  explicit PeakMemory(const at::Device& device);  // resets the peak
  std::optional<int64_t> peak_bytes() const;      // since construction (CPU: process peak RSS)
  std::string kind() const;                       // "cuda_allocator_peak" or "rss_peak"

 private:
  at::Device device_;
};

void synchronize(const at::Device& device);

}  // namespace lcb::harness
