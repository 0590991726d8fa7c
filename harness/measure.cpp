#include "harness/measure.h"

#include <ATen/DeviceAccelerator.h>
#include <c10/core/Event.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <string>

namespace lcb::harness {

double Timing::median() const {
  std::vector<double> v = ms;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  if (n == 0) return 0;
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double Timing::min() const {
  return ms.empty() ? 0 : *std::min_element(ms.begin(), ms.end());
}

double Timing::max() const {
  return ms.empty() ? 0 : *std::max_element(ms.begin(), ms.end());
}

void synchronize(const at::Device& device) {
  if (device.is_cuda()) {
    c10::impl::VirtualGuardImpl impl(device.type());
    impl.synchronizeDevice(device.has_index() ? device.index() : impl.getDevice().index());
  }
}

Timing time_on(const at::Device& device, int64_t warmup, int64_t repeats, const std::function<void()>& fn) {
  for (int64_t i = 0; i < warmup; ++i) fn();
  synchronize(device);
  Timing t;
  if (device.is_cuda()) {
    c10::impl::VirtualGuardImpl impl(device.type());
    const c10::Stream stream = impl.getStream(device.has_index() ? device : impl.getDevice());
    for (int64_t i = 0; i < repeats; ++i) {
      c10::Event start(device.type(), c10::EventFlag::BACKEND_DEFAULT);
      c10::Event stop(device.type(), c10::EventFlag::BACKEND_DEFAULT);
      start.record(stream);
      fn();
      stop.record(stream);
      stop.synchronize();
      t.ms.push_back(start.elapsedTime(stop));
    }
  } else {
    for (int64_t i = 0; i < repeats; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      fn();
      const auto t1 = std::chrono::steady_clock::now();
      t.ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
  }
  return t;
}

PeakMemory::PeakMemory(const at::Device& device) : device_(device) {
  if (device_.is_cuda()) {
    at::accelerator::resetPeakStats(device_.has_index() ? device_.index() : 0);
  } else {
    std::ofstream("/proc/self/clear_refs") << "5";  // resets VmHWM to the current RSS
  }
}

std::optional<int64_t> PeakMemory::peak_bytes() const {
  if (device_.is_cuda()) {
    const auto stats = at::accelerator::getDeviceStats(device_.has_index() ? device_.index() : 0);
    return stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak;
  }
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;  // reported in kB
  }
  return std::nullopt;
}

std::string PeakMemory::kind() const {
  return device_.is_cuda() ? "cuda_allocator_peak" : "rss_peak";
}

}  // namespace lcb::harness
