// Progress of a sweep on stderr: cells done, the last cell's outcome, elapsed time and ETA.
// On a terminal one line is redrawn; otherwise a line is printed about every 10% (or 30 s).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace lcb::harness {

class Progress {
 public:
  Progress(int64_t total, bool quiet);
  void skipped(int64_t n);                        // cells already stored
  void done(const std::string& label, const std::string& status);
  void finish();

 private:
  void print(const std::string& label, const std::string& status, bool force);
  int64_t total_, done_ = 0, skipped_ = 0, ran_ = 0;
  bool quiet_, tty_;
  std::chrono::steady_clock::time_point start_, last_print_;
  int64_t last_decile_ = -1;
};

std::string format_duration(double seconds);  // "1:05", "1:02:03"

}  // namespace lcb::harness
