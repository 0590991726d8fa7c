// Spec strings: "family" or "family:key=value,key=value" (e.g. "dga:m=16,gamma=0.1").
// Used for attention implementations and for tasks. Parameters are declared with their kind,
// default and accepted range, so every error can say what was wrong and what is accepted.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace lcb {

struct ParamDef {
  enum class Kind { Int, Real, Choice, Text };
  std::string name;
  Kind kind = Kind::Int;
  std::string default_value;         // as it would be written in a spec
  double min = 0, max = 0;           // inclusive range for Int and Real
  std::vector<std::string> choices;  // for Choice
  std::string help;

  static ParamDef integer(std::string name, int64_t def, int64_t min, int64_t max, std::string help);
  static ParamDef real(std::string name, double def, double min, double max, std::string help);
  static ParamDef choice(std::string name, std::string def, std::vector<std::string> choices, std::string help);
  static ParamDef text(std::string name, std::string def, std::string help);  // no ',' or '=' inside

  std::string accepted() const;  // e.g. "an integer >= 1", "a number in [0, 1]", "one of last|strided"
};

// Parsed, validated parameter values (every declared parameter present, defaults filled in).
class Params {
 public:
  int64_t integer(const std::string& name) const;
  double real(const std::string& name) const;
  const std::string& text(const std::string& name) const;
  bool explicitly_set(const std::string& name) const;

 private:
  friend struct SpecParser;
  std::map<std::string, std::string> values_;
  std::map<std::string, bool> explicit_;
};

struct ParsedSpec {
  std::string family;
  Params params;
  std::string canonical;  // family plus every parameter in declaration order
};

// Splits "family:k=v,..." into the family name and raw key/value pairs. Throws
// std::invalid_argument on syntax errors (empty name, missing '=', duplicate key).
std::pair<std::string, std::vector<std::pair<std::string, std::string>>> split_spec(const std::string& spec);

// Validates raw pairs against the declarations; `what` names the thing in errors
// ("attention implementation 'dga'"). Throws std::invalid_argument.
ParsedSpec parse_params(const std::string& spec, const std::string& what, const std::vector<ParamDef>& defs);

// Canonical text of a number as written in specs and keys ("0.1", "16", "1e-05").
std::string format_number(double x);

}  // namespace lcb
