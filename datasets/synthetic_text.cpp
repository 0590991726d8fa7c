#include "datasets/synthetic_text.h"

#include <algorithm>
#include <functional>
#include <map>
#include <cmath>
#include <random>
#include <set>
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

namespace {

// Lays out [BOS, intro, haystack with the needles, question] at exactly `length` tokens; the
// haystack is whole units from `unit` (the last one cut), the first needle at `depth`.
TextSample build_sample(const std::string& task, const Layout& l, int64_t length, double depth, Gen& g, const Tokenizer& tok,
                        const std::function<std::string(Gen&)>& unit_text) {
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
    units.push_back(tok.encode(unit_text(g)));
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
  s.expected = l.expected.empty() ? std::vector<std::string>{l.answer} : l.expected;
  s.answer_ids = tok.encode(" " + l.answer);
  s.answer_ids.push_back(tok.eos_id());
  return s;
}

}  // namespace

TextSample make_text_sample(const std::string& task, int64_t length, double depth, uint64_t seed, const Tokenizer& tok) {
  Gen g(seed);
  const Layout l = layout_for(task, g);
  return build_sample(task, l, length, depth, g, tok, [&](Gen& gen) {
    return l.records ? "key " + gen.pick(kNouns) + "-" + gen.digits(4) + " has value " + gen.digits(6) + "." : gen.sentence();
  });
}

namespace {

std::string uuid(Gen& g) {
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < 32; ++i) {
    if (i == 8 || i == 12 || i == 16 || i == 20) s += '-';
    s += hex[g.uniform(0, 15)];
  }
  return s;
}

std::string item(const std::string& type, Gen& g) {
  if (type == "uuid") return uuid(g);
  if (type == "number") return g.digits(7);
  return g.pick(kAdjectives) + "-" + g.pick(kNouns);
}

std::string coded_word(Gen& g) {
  std::string w;
  for (int i = 0; i < 5; ++i) w += static_cast<char>('a' + g.uniform(0, 25));
  return w;
}

TextSample ruler_niah(const RulerParams& p, int64_t length, double depth, Gen& g, const Tokenizer& tok) {
  if (p.queries > p.needles) throw std::invalid_argument("niah: queries (" + std::to_string(p.queries) + ") cannot exceed needles");
  const std::string noun = p.values == "uuid" ? "uuids" : p.values == "word" ? "words" : "numbers";
  Layout l;
  std::vector<std::string> keys;
  while (static_cast<int64_t>(keys.size()) < p.needles) {
    const std::string k = item(p.keys, g);
    if (std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(k);
  }
  // The queried keys' needles come first, so the first of them sits at the cell's depth.
  for (int64_t k = 0; k < p.needles; ++k) {
    for (int64_t v = 0; v < p.values_per_key; ++v) {
      const std::string value = item(p.values, g);
      l.needles.push_back("One of the special magic " + noun + " for " + keys[k] + " is: " + value + ".");
      if (k < p.queries) l.expected.push_back(value);
    }
  }
  std::string asked;
  for (int64_t q = 0; q < p.queries; ++q) asked += (q ? (q + 1 == p.queries ? " and " : ", ") : "") + keys[q];
  l.intro = "Some special magic " + noun + " are hidden within the following text. Make sure to memorize it. I will quiz you about the " +
            noun + " afterwards.";
  l.question = "What are all the special magic " + noun + " for " + asked + " mentioned in the provided text? The special magic " +
               noun + " for " + asked + " mentioned in the provided text are";
  for (const auto& v : l.expected) l.answer += (l.answer.empty() ? "" : ", ") + v;
  return build_sample("niah", l, length, depth, g, tok, [](Gen& gen) { return gen.sentence(); });
}

// A numbered word list (cwe) or a coded text (fwe) whose most frequent words are the answer.
TextSample ruler_counting(const RulerParams& p, int64_t length, Gen& g, const Tokenizer& tok) {
  Layout l;
  const bool cwe = p.kind == "cwe";
  l.intro = cwe ? "Below is a numbered list of words. In these words, some appear more often than others. Memorize the ones that appear most often."
                : "Read the following coded text and track the frequency of each coded word. Find the most frequently appeared coded words.";
  l.question = cwe ? "Question: What are the " + std::to_string(p.top) + " most common words in the above list? Answer: The top " +
                         std::to_string(p.top) + " words appearing most often in the list are:"
                   : "Question: What are the " + std::to_string(p.top) +
                         " most frequently appeared words in the above coded text? Answer: According to the coded text above, the " +
                         std::to_string(p.top) + " most frequently appeared words are:";
  const int64_t fixed = 1 + static_cast<int64_t>(tok.encode(l.intro).size() + tok.encode(l.question).size());
  const int64_t per_word = static_cast<int64_t>(tok.encode(cwe ? " 100. " + g.pick(kNouns) : " " + coded_word(g)).size());
  const int64_t words = std::max<int64_t>(0, (length - fixed) / std::max<int64_t>(1, per_word));
  std::vector<std::string> list;
  std::vector<std::string> vocab;
  while (static_cast<int64_t>(vocab.size()) < std::max<int64_t>(p.top * 4, words)) {
    const std::string w = cwe ? g.pick(kAdjectives) + g.pick(kNouns) : coded_word(g);
    if (std::find(vocab.begin(), vocab.end(), w) == vocab.end()) vocab.push_back(w);
    if (vocab.size() > 4096) break;
  }
  if (cwe) {  // the common words `freq` times each, the others fewer, as RULER (30 and 3 when they fit)
    const int64_t freq = std::clamp<int64_t>(words / (2 * p.top), 2, 30), rare = std::min<int64_t>(3, freq - 1);
    for (int64_t i = 0; i < p.top; ++i)
      for (int64_t k = 0; k < freq; ++k) list.push_back(vocab[i]);
    for (size_t i = static_cast<size_t>(p.top); static_cast<int64_t>(list.size()) < words && i < vocab.size(); ++i)
      for (int64_t k = 0; k < rare; ++k) list.push_back(vocab[i]);
  } else {  // Zipf (alpha 2) over the vocabulary
    std::vector<double> w;
    for (size_t r = 0; r < vocab.size(); ++r) w.push_back(1.0 / std::pow(static_cast<double>(r + 1), 2.0));
    std::discrete_distribution<size_t> zipf(w.begin(), w.end());
    while (static_cast<int64_t>(list.size()) < words) list.push_back(vocab[zipf(g.rng())]);
  }
  std::shuffle(list.begin(), list.end(), g.rng());
  size_t next = 0;
  TextSample sample = build_sample(p.kind, l, length, 0.0, g, tok, [&](Gen& gen) {
    const std::string w = next < list.size() ? list[next] : coded_word(gen);  // beyond the list: words seen once
    ++next;
    return cwe ? std::to_string(next) + ". " + w : w;
  });
  // The answer counts the words that made it into the prompt (the haystack may end early).
  std::map<std::string, int64_t> count;
  for (size_t i = 0; i < std::min(next, list.size()); ++i) ++count[list[i]];
  std::vector<std::pair<int64_t, std::string>> ranked;
  for (const auto& [w, n] : count) ranked.push_back({-n, w});
  std::sort(ranked.begin(), ranked.end());
  sample.expected.clear();
  sample.answer.clear();
  for (int64_t i = 0; i < p.top && i < static_cast<int64_t>(ranked.size()); ++i) {
    sample.expected.push_back(ranked[i].second);
    sample.answer += (sample.answer.empty() ? "" : " ") + ranked[i].second;
  }
  sample.answer_ids = tok.encode(" " + sample.answer);
  sample.answer_ids.push_back(tok.eos_id());
  return sample;
}

// RULER's key-value retrieval: a JSON object of UUID pairs; the asked pair sits at `depth`.
TextSample ruler_kv(int64_t length, double depth, Gen& g, const Tokenizer& tok) {
  Layout l;
  const std::string key = uuid(g), value = uuid(g);
  l.intro = "Extract the value corresponding to the specified key in the JSON object below. JSON data: {";
  l.needles = {"\"" + key + "\": \"" + value + "\","};
  l.question = "} Key: \"" + key + "\" The value associated with the specified key is:";
  l.answer = value;
  return build_sample("kv", l, length, depth, g, tok, [](Gen& gen) {
    const std::string k = uuid(gen);
    return "\"" + k + "\": \"" + uuid(gen) + "\",";
  });
}

}  // namespace

TextSample make_ruler_sample(const RulerParams& p, int64_t length, double depth, uint64_t seed, const Tokenizer& tok) {
  Gen g(seed);
  if (p.kind == "kv") return ruler_kv(length, depth, g, tok);
  if (p.kind == "niah") return ruler_niah(p, length, depth, g, tok);
  if (p.kind == "cwe" || p.kind == "fwe") return ruler_counting(p, length, g, tok);
  throw std::invalid_argument("unknown RULER task kind '" + p.kind + "' (niah, kv, cwe, fwe)");
}

namespace {

const std::vector<std::string> kNames = {"Alder", "Brenna", "Caspian", "Delia", "Emrys", "Fenna", "Gideon", "Halle",
                                         "Ivor", "Juno", "Kester", "Linnea", "Marlo", "Nerys", "Orrin", "Petra"};
const std::vector<std::string> kCities = {"Ardmore", "Belcastle", "Corrin", "Dunmere", "Eastholm", "Fairlow", "Glenrock",
                                          "Harwick", "Ivydale", "Kingsbury"};
const std::vector<std::string> kLabels = {"amber", "cobalt", "jade", "onyx", "ruby", "topaz"};

std::string passage(Gen& g, int sentences) {
  std::string p;
  for (int i = 0; i < sentences; ++i) p += (i ? " " : "") + g.sentence();
  return p;
}

}  // namespace

const std::vector<std::string>& longbench_synthetic_kinds() {
  static const std::vector<std::string> k = {"single_doc_qa", "multi_doc_qa", "passage_count", "passage_retrieval", "few_shot", "code"};
  return k;
}

TextSample make_longbench_synthetic(const std::string& kind, int64_t length, double depth, uint64_t seed, const Tokenizer& tok) {
  Gen g(seed);
  Layout l;
  if (kind == "single_doc_qa") {
    const std::string name = g.pick(kNames), thing = g.pick(kNouns), value = g.pick(kAdjectives) + " " + g.pick(kNouns);
    l.intro = "Read the following document and answer the question at the end.";
    l.needles = {"The favourite " + thing + " of " + name + " is the " + value + "."};
    l.question = "Question: What is the favourite " + thing + " of " + name + "? Answer:";
    l.answer = "the " + value;
    return build_sample(kind, l, length, depth, g, tok, [](Gen& gen) { return gen.sentence(); });
  }
  if (kind == "multi_doc_qa") {
    const std::string name = g.pick(kNames), company = g.pick(kAdjectives) + " " + g.pick(kNouns) + " Company", city = g.pick(kCities);
    l.intro = "Answer the question based on the given passages.";
    l.needles = {name + " works at the " + company + ".", "The " + company + " is located in " + city + "."};
    l.question = "Question: In which city is the company that " + name + " works at located? Answer:";
    l.answer = city;
    int64_t n = 0;
    return build_sample(kind, l, length, depth, g, tok, [&](Gen& gen) {
      return "Passage " + std::to_string(++n) + ": " + passage(gen, 3);
    });
  }
  if (kind == "passage_retrieval") {
    // Paragraphs are numbered in order; the asked one's first sentence is quoted in the question.
    l.intro = "Here are numbered paragraphs. Determine which paragraph the sentence at the end comes from.";
    const int64_t per = static_cast<int64_t>(tok.encode("Paragraph 10: " + passage(g, 3)).size()) + 4;
    const int64_t count = std::max<int64_t>(2, (length - 80) / per);
    const int64_t target = std::clamp<int64_t>(std::llround(depth * static_cast<double>(count - 1)), 0, count - 1);
    std::vector<std::string> paragraphs;
    std::string quote;
    for (int64_t i = 0; i < count; ++i) {
      const std::string first = g.sentence();
      if (i == target) quote = first;
      paragraphs.push_back("Paragraph " + std::to_string(i + 1) + ": " + first + " " + passage(g, 2));
    }
    l.question = "Sentence: " + quote + " Which paragraph is it from? Answer: Paragraph";
    l.answer = "Paragraph " + std::to_string(target + 1);
    size_t next = 0;
    TextSample s = build_sample(kind, l, length, 0.0, g, tok, [&](Gen& gen) { return next < paragraphs.size() ? paragraphs[next++] : gen.sentence(); });
    if (static_cast<int64_t>(next) <= target) throw std::invalid_argument("passage_retrieval: length " + std::to_string(length) + " too short");
    return s;
  }
  if (kind == "passage_count") {
    l.intro = "Below are passages, some of which repeat. Count how many different passages there are.";
    const int64_t per = static_cast<int64_t>(tok.encode(passage(g, 2)).size()) + 4;
    const int64_t total = std::max<int64_t>(2, (length - 60) / per);
    const int64_t unique = std::max<int64_t>(1, total * 2 / 3);
    std::vector<std::string> distinct;
    for (int64_t i = 0; i < unique; ++i) distinct.push_back(passage(g, 2));
    std::vector<std::string> list = distinct;
    while (static_cast<int64_t>(list.size()) < total) list.push_back(distinct[static_cast<size_t>(g.uniform(0, unique - 1))]);
    std::shuffle(list.begin(), list.end(), g.rng());
    l.question = "Question: How many different passages are there? Answer:";
    size_t next = 0;
    TextSample s = build_sample(kind, l, length, 0.0, g, tok, [&](Gen& gen) { return next < list.size() ? list[next++] : std::string("."); });
    // Count what made it into the prompt.
    std::set<std::string> seen(list.begin(), list.begin() + static_cast<std::ptrdiff_t>(std::min(next, list.size())));
    s.answer = std::to_string(seen.size());
    s.expected = {s.answer};
    s.answer_ids = tok.encode(" " + s.answer);
    s.answer_ids.push_back(tok.eos_id());
    return s;
  }
  if (kind == "few_shot") {
    // Each topic noun gets a made-up label; examples show the mapping, the last text asks for it.
    std::vector<std::string> topics = {kNouns[0], kNouns[4], kNouns[8], kNouns[12]};
    std::vector<std::string> labels = kLabels;
    std::shuffle(labels.begin(), labels.end(), g.rng());
    labels.resize(topics.size());
    const size_t asked = static_cast<size_t>(g.uniform(0, 3));
    auto example = [&](Gen& gen, size_t t) {
      return "Text: The " + gen.pick(kAdjectives) + " " + topics[t] + " " + gen.pick(kVerbs) + " the " + gen.pick(kNouns) + ".";
    };
    l.intro = "Label each text. Examples follow.";
    l.question = example(g, asked) + " Label:";
    l.answer = labels[asked];
    TextSample s = build_sample(kind, l, length, 0.0, g, tok, [&](Gen& gen) {
      const size_t t = static_cast<size_t>(gen.uniform(0, 3));
      return example(gen, t) + " Label: " + labels[t];
    });
    s.classes = labels;
    return s;
  }
  if (kind == "code") {
    // Code in the words and symbols lcb's text uses, so any of its tokenizers can spell it.
    auto line = [](int64_t k, int64_t a, int64_t b) {
      return "def f" + std::to_string(k) + " x: return x times " + std::to_string(a) + " plus " + std::to_string(b) + ".";
    };
    const int64_t k = g.uniform(1, 999), a = g.uniform(2, 9), b = g.uniform(1, 99);
    l.intro = "Complete the code.";
    l.needles = {line(k, a, b)};
    l.question = "def f" + std::to_string(k) + " x:";
    l.answer = "return x times " + std::to_string(a) + " plus " + std::to_string(b) + ".";
    return build_sample(kind, l, length, depth, g, tok, [&](Gen& gen) {
      const int64_t kk = gen.uniform(1000, 9999), aa = gen.uniform(2, 9), bb = gen.uniform(1, 99);
      return line(kk, aa, bb);
    });
  }
  std::string known;
  for (const auto& k : longbench_synthetic_kinds()) known += (known.empty() ? "" : ", ") + k;
  throw std::invalid_argument("unknown LongBench-category task '" + kind + "'; known: " + known);
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
