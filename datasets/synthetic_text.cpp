#include "datasets/synthetic_text.h"

#include <algorithm>
#include <random>
#include <stdexcept>

namespace lcb::datasets {
namespace {

const std::vector<std::string> kNouns = {
    "river", "garden", "window", "teacher", "market", "mountain", "letter", "engine", "forest", "bridge", "kitchen",
    "village", "island", "painter", "doctor", "farmer", "lantern", "harbor", "meadow", "castle", "station", "library",
    "orchard", "bottle", "candle", "pocket", "ladder", "mirror", "blanket", "pencil", "wagon", "basket", "tower",
    "valley", "desert", "cottage", "violin", "compass", "shadow", "thunder", "sailor", "baker", "tailor", "merchant",
    "student", "captain", "clock", "hammer", "feather", "pebble"};
const std::vector<std::string> kAdjectives = {
    "quiet", "bright", "ancient", "narrow", "gentle", "heavy", "curious", "silver", "golden", "patient", "distant",
    "crowded", "humble", "rapid", "fragile", "honest", "clever", "dusty", "frozen", "warm", "hollow", "lively",
    "modest", "noble", "rusty", "steady", "tiny", "vast", "wild", "young"};
const std::vector<std::string> kVerbs = {
    "watched", "carried", "followed", "painted", "repaired", "visited", "described", "ignored", "measured", "cleaned",
    "opened", "moved", "found", "built", "crossed", "praised", "counted", "shared", "admired", "studied"};
const std::vector<std::string> kAdverbs = {"slowly", "quickly", "carefully", "quietly", "happily", "rarely", "often", "calmly"};
const std::vector<std::string> kTasks = {"passkey", "niah_single", "kv_retrieval", "variable_tracking"};

class Gen {
 public:
  explicit Gen(uint64_t seed) : rng_(seed) {}
  int64_t uniform(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng_); }
  const std::string& pick(const std::vector<std::string>& v) { return v[static_cast<size_t>(uniform(0, static_cast<int64_t>(v.size()) - 1))]; }
  std::string digits(int n) {
    std::string s = std::to_string(uniform(1, 9));
    for (int i = 1; i < n; ++i) s += std::to_string(uniform(0, 9));
    return s;
  }
  std::string upper_name(int n) {
    std::string s;
    for (int i = 0; i < n; ++i) s += static_cast<char>('A' + uniform(0, 25));
    return s;
  }
  std::string sentence() {
    switch (uniform(0, 5)) {
      case 0: return "The " + pick(kAdjectives) + " " + pick(kNouns) + " " + pick(kVerbs) + " the " + pick(kNouns) + ".";
      case 1: return "A " + pick(kNouns) + " near the " + pick(kNouns) + " was " + pick(kAdjectives) + " and " + pick(kAdjectives) + ".";
      case 2: return "Every " + pick(kNouns) + " " + pick(kVerbs) + " a " + pick(kAdjectives) + " " + pick(kNouns) + " " + pick(kAdverbs) + ".";
      case 3: return "Nobody " + pick(kVerbs) + " the " + pick(kNouns) + " in the " + pick(kAdjectives) + " " + pick(kNouns) + ".";
      case 4: return "Later the " + pick(kNouns) + " " + pick(kVerbs) + " the " + pick(kNouns) + " again.";
      default: return "It was a " + pick(kAdjectives) + " day for the " + pick(kNouns) + ".";
    }
  }
  std::mt19937_64& rng() { return rng_; }

 private:
  std::mt19937_64 rng_;
};

struct Layout {
  std::string intro, question, answer;
  std::vector<std::string> needles;  // placed in order, the first at `depth`
  std::vector<std::string> expected;
  bool records = false;              // haystack of key/value records instead of sentences
};

Layout layout_for(const std::string& task, Gen& g) {
  Layout l;
  if (task == "passkey") {
    const std::string key = g.digits(5);
    l.intro = "There is an important pass key hidden inside a lot of irrelevant text. Find it and memorize it.";
    l.needles = {"The pass key is " + key + ". Remember it. " + key + " is the pass key."};
    l.question = "What is the pass key? The pass key is";
    l.answer = key;
  } else if (task == "niah_single") {
    const std::string word = g.pick(kNouns), value = g.digits(7);
    l.intro = "Some special magic numbers are hidden within the following text. Make sure to memorize them.";
    l.needles = {"One of the special magic numbers for " + word + " is: " + value + "."};
    l.question = "What is the special magic number for " + word + " mentioned in the provided text? The special magic number for " +
                 word + " mentioned in the provided text is";
    l.answer = value;
  } else if (task == "kv_retrieval") {
    const std::string key = g.pick(kNouns) + "-" + g.digits(4), value = g.digits(6);
    l.intro = "Below are key and value records. Remember the value of every key.";
    l.needles = {"key " + key + " has value " + value + "."};
    l.question = "What is the value of key " + key + "? The value of key " + key + " is";
    l.answer = value;
    l.records = true;
  } else if (task == "variable_tracking") {
    const std::string value = g.digits(5);
    std::vector<std::string> names;
    for (int i = 0; i < 4; ++i) names.push_back(g.upper_name(5));
    l.intro = "Memorize and track the chain of variable assignments hidden in the following text.";
    l.needles = {"VAR " + names[0] + " = " + value + "."};
    for (int i = 1; i < 4; ++i) l.needles.push_back("VAR " + names[i] + " = VAR " + names[i - 1] + ".");
    l.question = "Find all variables that are assigned the value " + value + " in the text above. Answer:";
    for (const auto& n : names) l.answer += (l.answer.empty() ? "" : " ") + n;
    l.expected = names;
  } else {
    std::string known;
    for (const auto& t : kTasks) known += (known.empty() ? "" : ", ") + t;
    throw std::invalid_argument("unknown text task '" + task + "'; known: " + known);
  }
  if (l.expected.empty()) l.expected = {l.answer};
  return l;
}

}  // namespace

const std::vector<std::string>& text_task_names() { return kTasks; }

TextSample make_text_sample(const std::string& task, int64_t length, double depth, uint64_t seed, const Tokenizer& tok) {
  Gen g(seed);
  const Layout l = layout_for(task, g);
  const std::vector<int64_t> intro = tok.encode(l.intro), question = tok.encode(l.question);
  std::vector<std::vector<int64_t>> needles;
  int64_t fixed = 1 + static_cast<int64_t>(intro.size() + question.size());
  for (const auto& n : l.needles) {
    needles.push_back(tok.encode(n));
    fixed += static_cast<int64_t>(needles.back().size());
  }
  const int64_t budget = length - fixed;
  if (budget < 0) {
    throw std::invalid_argument("length " + std::to_string(length) + " is too short for task " + task + " (needs at least " +
                                std::to_string(fixed) + " tokens)");
  }
  // Haystack: whole filler units, the last one cut to fill the budget exactly.
  std::vector<std::vector<int64_t>> units;
  int64_t have = 0;
  while (have < budget) {
    const std::string unit = l.records ? "key " + g.pick(kNouns) + "-" + g.digits(4) + " has value " + g.digits(6) + "." : g.sentence();
    units.push_back(tok.encode(unit));
    have += static_cast<int64_t>(units.back().size());
  }
  if (have > budget) units.back().resize(units.back().size() - static_cast<size_t>(have - budget));
  // Needle positions (in units): the first at `depth`, the others spread over the rest.
  const int64_t n_units = static_cast<int64_t>(units.size());
  std::vector<int64_t> at;
  const int64_t first = std::llround(std::clamp(depth, 0.0, 1.0) * static_cast<double>(n_units));
  for (size_t i = 0; i < needles.size(); ++i) {
    at.push_back(first + static_cast<int64_t>(i) * (n_units - first) / static_cast<int64_t>(needles.size()));
  }
  TextSample s;
  s.prompt.push_back(tok.bos_id());
  s.prompt.insert(s.prompt.end(), intro.begin(), intro.end());
  size_t next = 0;
  for (int64_t u = 0; u <= n_units; ++u) {
    while (next < needles.size() && at[next] == u) {
      if (next == 0) s.needle_token = static_cast<int64_t>(s.prompt.size());
      s.prompt.insert(s.prompt.end(), needles[next].begin(), needles[next].end());
      ++next;
    }
    if (u < n_units) s.prompt.insert(s.prompt.end(), units[u].begin(), units[u].end());
  }
  s.prompt.insert(s.prompt.end(), question.begin(), question.end());
  s.answer = l.answer;
  s.expected = l.expected;
  s.answer_ids = tok.encode(" " + l.answer);
  s.answer_ids.push_back(tok.eos_id());
  return s;
}

std::string tokenizer_corpus(int64_t lines, uint64_t seed) {
  Gen g(seed);
  std::string out;
  for (int64_t i = 0; i < lines; ++i) {
    const Layout l = layout_for(kTasks[static_cast<size_t>(i) % kTasks.size()], g);
    out += l.intro + " " + g.sentence() + " " + g.sentence() + " key " + g.pick(kNouns) + "-" + g.digits(4) + " has value " +
           g.digits(6) + ".";
    for (const auto& n : l.needles) out += " " + n;
    out += " " + l.question + " " + l.answer + "\n";
  }
  return out;
}

}  // namespace lcb::datasets
