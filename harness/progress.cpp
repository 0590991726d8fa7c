#include "harness/progress.h"

#include <unistd.h>

#include <cstdio>

namespace lcb::harness {

std::string format_duration(double seconds) {
  const auto s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  } else {
    std::snprintf(buf, sizeof buf, "%lld:%02lld", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  }
  return buf;
}

Progress::Progress(int64_t total, bool quiet)
    : total_(total), quiet_(quiet), tty_(isatty(STDERR_FILENO) != 0), start_(std::chrono::steady_clock::now()),
      last_print_(start_) {}

void Progress::skipped(int64_t n) {
  skipped_ += n;
  done_ += n;
}

void Progress::done(const std::string& label, const std::string& status) {
  ++done_;
  ++ran_;
  print(label, status, false);
}

void Progress::print(const std::string& label, const std::string& status, bool force) {
  if (quiet_ || total_ == 0) return;
  const auto now = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const int64_t decile = done_ * 10 / total_;
  const bool due = tty_ || force || decile != last_decile_ ||
                   std::chrono::duration<double>(now - last_print_).count() > 30.0;
  if (!due) return;
  last_decile_ = decile;
  last_print_ = now;
  const int64_t remaining = total_ - done_;
  std::string eta = "--:--";
  if (ran_ > 0) eta = format_duration(elapsed / static_cast<double>(ran_) * static_cast<double>(remaining));
  char head[96];
  std::snprintf(head, sizeof head, "[%*lld/%lld] %3lld%%", static_cast<int>(std::to_string(total_).size()),
                static_cast<long long>(done_), static_cast<long long>(total_),
                static_cast<long long>(done_ * 100 / total_));
  std::string line = std::string(head) + "  elapsed " + format_duration(elapsed) + "  eta " + eta;
  if (!label.empty()) line += "  " + label + ": " + status;
  if (tty_) {
    if (line.size() > 118) line = line.substr(0, 115) + "...";
    std::fprintf(stderr, "\r\033[2K%s", line.c_str());
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

void Progress::finish() {
  if (quiet_) return;
  if (tty_ && total_ > 0) std::fprintf(stderr, "\n");
}

}  // namespace lcb::harness
