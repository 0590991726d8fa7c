// A plain table rendered as Markdown, HTML or aligned terminal text, so every report section is
// written once.
#pragma once

#include <string>
#include <vector>

namespace lcb::reports {

struct Table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  bool heat = false;  // HTML: colour numeric cells in [0, 1] from red (0) to green (1)

  std::string markdown() const;
  std::string html() const;
  std::string text() const;  // columns padded to their widest entry
};

std::string html_escape(const std::string& s);
std::string format(const char* fmt, double x);

}  // namespace lcb::reports
