#include "attention_impls/spec.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <set>
#include <sstream>
#include <stdexcept>

namespace lcb {

ParamDef ParamDef::integer(std::string name, int64_t def, int64_t min, int64_t max, std::string help) {
  ParamDef d;
  d.name = std::move(name);
  d.kind = Kind::Int;
  d.default_value = std::to_string(def);
  d.min = static_cast<double>(min);
  d.max = static_cast<double>(max);
  d.help = std::move(help);
  return d;
}

ParamDef ParamDef::real(std::string name, double def, double min, double max, std::string help) {
  ParamDef d;
  d.name = std::move(name);
  d.kind = Kind::Real;
  d.default_value = format_number(def);
  d.min = min;
  d.max = max;
  d.help = std::move(help);
  return d;
}

ParamDef ParamDef::choice(std::string name, std::string def, std::vector<std::string> choices, std::string help) {
  ParamDef d;
  d.name = std::move(name);
  d.kind = Kind::Choice;
  d.default_value = std::move(def);
  d.choices = std::move(choices);
  d.help = std::move(help);
  return d;
}

ParamDef ParamDef::text(std::string name, std::string def, std::string help) {
  ParamDef d;
  d.name = std::move(name);
  d.kind = Kind::Text;
  d.default_value = std::move(def);
  d.help = std::move(help);
  return d;
}

std::string format_number(double x) {
  if (std::isfinite(x) && x == std::floor(x) && std::fabs(x) < 1e15) {
    return std::to_string(static_cast<int64_t>(x));
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.10g", x);
  return buf;
}

std::string ParamDef::accepted() const {
  const bool unbounded = max >= static_cast<double>(std::numeric_limits<int64_t>::max()) / 2;
  switch (kind) {
    case Kind::Int:
      if (unbounded) return "an integer >= " + format_number(min);
      return "an integer in [" + format_number(min) + ", " + format_number(max) + "]";
    case Kind::Real:
      return "a number in [" + format_number(min) + ", " + format_number(max) + "]";
    case Kind::Text:
      return "text without ',' or '='";
    case Kind::Choice: {
      std::string s = "one of ";
      for (size_t i = 0; i < choices.size(); ++i) s += (i ? "|" : "") + choices[i];
      return s;
    }
  }
  return {};
}

int64_t Params::integer(const std::string& name) const {
  return std::stoll(text(name));
}
double Params::real(const std::string& name) const {
  return std::stod(text(name));
}
const std::string& Params::text(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) throw std::logic_error("undeclared parameter '" + name + "' requested");
  return it->second;
}
bool Params::explicitly_set(const std::string& name) const {
  auto it = explicit_.find(name);
  return it != explicit_.end() && it->second;
}

static std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t");
  size_t e = s.find_last_not_of(" \t");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

std::pair<std::string, std::vector<std::pair<std::string, std::string>>> split_spec(const std::string& spec) {
  const std::string s = trim(spec);
  const size_t colon = s.find(':');
  std::string family = trim(s.substr(0, colon));
  if (family.empty()) throw std::invalid_argument("empty spec '" + spec + "': expected 'name' or 'name:key=value,...'");
  std::vector<std::pair<std::string, std::string>> kv;
  if (colon != std::string::npos) {
    std::stringstream rest(s.substr(colon + 1));
    std::string item;
    std::set<std::string> seen;
    while (std::getline(rest, item, ',')) {
      item = trim(item);
      const size_t eq = item.find('=');
      if (item.empty() || eq == std::string::npos || eq == 0) {
        throw std::invalid_argument("malformed parameter '" + item + "' in spec '" + spec +
                                    "': expected key=value pairs separated by commas");
      }
      std::string key = trim(item.substr(0, eq));
      std::string value = trim(item.substr(eq + 1));
      if (!seen.insert(key).second) {
        throw std::invalid_argument("parameter '" + key + "' given twice in spec '" + spec + "'");
      }
      kv.emplace_back(std::move(key), std::move(value));
    }
  }
  return {family, kv};
}

struct SpecParser {
  static ParsedSpec parse(const std::string& spec, const std::string& what, const std::vector<ParamDef>& defs) {
    auto [family, kv] = split_spec(spec);
    ParsedSpec out;
    out.family = family;
    for (const auto& d : defs) {
      out.params.values_[d.name] = d.default_value;
      out.params.explicit_[d.name] = false;
    }
    for (const auto& [key, value] : kv) {
      const ParamDef* def = nullptr;
      for (const auto& d : defs) {
        if (d.name == key) def = &d;
      }
      if (def == nullptr) {
        std::string known;
        for (const auto& d : defs) known += (known.empty() ? "" : ", ") + d.name;
        throw std::invalid_argument("unknown parameter '" + key + "' for " + what + "; accepted: " +
                                    (known.empty() ? std::string("none") : known));
      }
      out.params.values_[key] = canonical_value(*def, value, what);
      out.params.explicit_[key] = true;
    }
    out.canonical = family;
    for (size_t i = 0; i < defs.size(); ++i) {
      out.canonical += (i == 0 ? ":" : ",") + defs[i].name + "=" + out.params.values_[defs[i].name];
    }
    return out;
  }

  static std::string canonical_value(const ParamDef& d, const std::string& value, const std::string& what) {
    auto fail = [&]() -> std::invalid_argument {
      return std::invalid_argument("bad value '" + value + "' for parameter '" + d.name + "' of " + what +
                                   ": expected " + d.accepted() + (d.help.empty() ? "" : " (" + d.help + ")"));
    };
    if (d.kind == ParamDef::Kind::Text) {
      if (value.find_first_of(",=") != std::string::npos) throw fail();
      return value;
    }
    if (d.kind == ParamDef::Kind::Choice) {
      for (const auto& c : d.choices) {
        if (c == value) return value;
      }
      throw fail();
    }
    if (value.empty()) throw fail();
    char* end = nullptr;
    errno = 0;
    if (d.kind == ParamDef::Kind::Int) {
      const long long x = std::strtoll(value.c_str(), &end, 10);
      if (*end != '\0' || errno == ERANGE) throw fail();
      if (static_cast<double>(x) < d.min || static_cast<double>(x) > d.max) throw fail();
      return std::to_string(x);
    }
    const double x = std::strtod(value.c_str(), &end);
    if (*end != '\0' || errno == ERANGE || !std::isfinite(x)) throw fail();
    if (x < d.min || x > d.max) throw fail();
    return format_number(x);
  }
};

ParsedSpec parse_params(const std::string& spec, const std::string& what, const std::vector<ParamDef>& defs) {
  return SpecParser::parse(spec, what, defs);
}

}  // namespace lcb
