#include "reports/export.h"

#include <cstdio>
#include <optional>
#include <type_traits>

namespace lcb::reports {
namespace {

std::string csv_quote(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

template <typename T>
std::string text_of(const T& v) {
  if constexpr (std::is_same_v<T, std::string>) {
    return v;
  } else if constexpr (std::is_same_v<T, double>) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return buf;
  } else {
    return std::to_string(v);
  }
}

template <typename T>
std::string text_of(const std::optional<T>& v) {
  return v ? text_of(*v) : std::string();
}

template <typename T>
nlohmann::json json_of(const T& v) {
  return v;
}

template <typename T>
nlohmann::json json_of(const std::optional<T>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

}  // namespace

nlohmann::json cells_json(const std::vector<store::CellRecord>& cells) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& c : cells) {
    nlohmann::json row = nlohmann::json::object();
    store::for_each_cell_field(c, [&](const char* name, const auto& v) { row[name] = json_of(v); });
    out.push_back(row);
  }
  return out;
}

std::string cells_csv(const std::vector<store::CellRecord>& cells) {
  std::string out;
  store::CellRecord header_source;
  bool first = true;
  store::for_each_cell_field(header_source, [&](const char* name, const auto&) {
    out += (first ? "" : ",") + std::string(name);
    first = false;
  });
  out += "\n";
  for (const auto& c : cells) {
    first = true;
    store::for_each_cell_field(c, [&](const char*, const auto& v) {
      out += (first ? "" : ",") + csv_quote(text_of(v));
      first = false;
    });
    out += "\n";
  }
  return out;
}

}  // namespace lcb::reports
