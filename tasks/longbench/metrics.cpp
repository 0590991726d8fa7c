#include "tasks/longbench/metrics.h"

#include <algorithm>
#include <array>
#include <functional>
#include <cfenv>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <stdexcept>

namespace lcb::longbench {

// --- text helpers (Python str semantics on code points) ----------------------------------------

std::u32string utf8_to_u32(const std::string& s) {
  std::u32string out;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) {  // invalid byte: U+FFFD, as Python's errors="replace"
      out.push_back(0xFFFD);
      ++i;
      continue;
    }
    char32_t cp = n == 1 ? c : c & (0x7F >> n);
    for (int k = 1; k < n; ++k) cp = cp << 6 | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    out.push_back(cp);
    i += n;
  }
  return out;
}

std::string u32_to_utf8(const std::u32string& s) {
  std::string out;
  for (char32_t c : s) {
    if (c < 0x80) {
      out += static_cast<char>(c);
    } else if (c < 0x800) {
      out += static_cast<char>(0xC0 | c >> 6);
      out += static_cast<char>(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
      out += static_cast<char>(0xE0 | c >> 12);
      out += static_cast<char>(0x80 | (c >> 6 & 0x3F));
      out += static_cast<char>(0x80 | (c & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | c >> 18);
      out += static_cast<char>(0x80 | (c >> 12 & 0x3F));
      out += static_cast<char>(0x80 | (c >> 6 & 0x3F));
      out += static_cast<char>(0x80 | (c & 0x3F));
    }
  }
  return out;
}

namespace {

using U = std::u32string;

// str.isspace() as Python's str.split() uses it.
bool is_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// str.split() with no argument: runs of whitespace, no empty pieces.
std::vector<U> split_ws(const U& s) {
  std::vector<U> out;
  U cur;
  for (char32_t c : s) {
    if (is_space(c)) {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

// str.split(sep) for a one-character separator: every piece, empty ones included.
std::vector<U> split_on(const U& s, char32_t sep) {
  std::vector<U> out(1);
  for (char32_t c : s) {
    if (c == sep) {
      out.emplace_back();
    } else {
      out.back().push_back(c);
    }
  }
  return out;
}

U join(const std::vector<U>& parts, const U& sep) {
  U out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? sep : U()) + parts[i];
  return out;
}

// str.lower() for ASCII, Latin-1, basic Greek and Cyrillic capitals.
char32_t lower(char32_t c) {
  if ((c >= 'A' && c <= 'Z') || (c >= 0xC0 && c <= 0xDE && c != 0xD7) || (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) ||
      (c >= 0x410 && c <= 0x42F)) {
    return c + 0x20;
  }
  if (c >= 0x400 && c <= 0x40F) return c + 0x50;
  return c;
}

// Python's \w for the scripts English text meets: ASCII alnum and _, and letters of the Latin,
// Greek and Cyrillic blocks and CJK ideographs; punctuation and symbol blocks are not word chars.
bool is_word(char32_t c) {
  if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  return (c >= 0xC0 && c <= 0x24F && c != 0xD7 && c != 0xF7) || (c >= 0x370 && c <= 0x4FF) || (c >= 0x3040 && c <= 0x30FF) ||
         (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0xAC00 && c <= 0xD7AF);
}

bool is_ascii_punct(char32_t c) {
  return c < 0x80 && ((c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) || (c >= 0x7B && c <= 0x7E));
}

// LongBench's normalize_answer: lower, drop string.punctuation, \b(a|an|the)\b -> " ", then
// " ".join(split()).
U normalize_answer(const U& s) {
  U t;
  for (char32_t c : s) {
    const char32_t l = lower(c);
    if (!is_ascii_punct(l)) t.push_back(l);
  }
  U no_articles;
  for (size_t i = 0; i < t.size();) {
    const bool boundary_before = i == 0 || !is_word(t[i - 1]);
    size_t matched = 0;
    if (boundary_before && is_word(t[i])) {
      for (const U& article : {U(U"a"), U(U"an"), U(U"the")}) {  // alternatives in regex order
        if (t.compare(i, article.size(), article) == 0 && (i + article.size() == t.size() || !is_word(t[i + article.size()]))) {
          matched = article.size();
          break;
        }
      }
    }
    if (matched) {
      no_articles.push_back(U' ');
      i += matched;
    } else {
      no_articles.push_back(t[i++]);
    }
  }
  return join(split_ws(no_articles), U" ");
}

// re.findall(r"\d+", s) with ASCII digits.
std::vector<U> numbers(const U& s) {
  std::vector<U> out;
  U cur;
  for (char32_t c : s) {
    if (c >= '0' && c <= '9') {
      cur.push_back(c);
    } else if (!cur.empty()) {
      out.push_back(cur);
      cur.clear();
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

double share_equal(const std::vector<U>& nums, const U& target) {
  if (nums.empty()) return 0.0;
  int64_t right = 0;
  for (const auto& n : nums) right += n == target;
  return static_cast<double>(right) / static_cast<double>(nums.size());
}

// rouge 1.0.1: a sentence list from text split on ".", pieces kept when non-empty before
// whitespace normalisation (so "a. . b" keeps an empty sentence).
std::vector<U> rouge_sentences(const U& text) {
  std::vector<U> out;
  for (const U& piece : split_on(text, U'.')) {
    if (!piece.empty()) out.push_back(join(split_ws(piece), U" "));
  }
  return out;
}

// CPython's recursion limit as it meets rouge's recursive LCS reconstruction when called from
// LongBench's eval.py (8 frames deep): a reconstruction of 992 frames or more raises
// RecursionError, which LongBench's rouge_score turns into 0.
constexpr int64_t kRecursionBudget = 1000 - 8;

struct RecursionExceeded {};

// The LCS words of x against y, reconstructed the way rouge 1.0.1 does it (up on a strict
// greater-than, else left), added to `words`.
void recon_lcs(const std::vector<U>& x, const std::vector<U>& y, std::set<U>& words) {
  const size_t n = x.size(), m = y.size();
  std::vector<std::vector<int32_t>> t(n + 1, std::vector<int32_t>(m + 1, 0));
  for (size_t i = 1; i <= n; ++i)
    for (size_t j = 1; j <= m; ++j) t[i][j] = x[i - 1] == y[j - 1] ? t[i - 1][j - 1] + 1 : std::max(t[i - 1][j], t[i][j - 1]);
  size_t i = n, j = m;
  int64_t frames = 1;
  std::vector<U> found;
  while (i > 0 && j > 0) {
    if (x[i - 1] == y[j - 1]) {
      found.push_back(x[i - 1]);
      --i;
      --j;
    } else if (t[i - 1][j] > t[i][j - 1]) {
      --i;
    } else {
      --j;
    }
    ++frames;
  }
  if (frames >= kRecursionBudget) throw RecursionExceeded{};
  words.insert(found.begin(), found.end());
}

}  // namespace

double qa_f1(const std::string& prediction, const std::string& truth) {
  const auto p = split_ws(normalize_answer(utf8_to_u32(prediction)));
  const auto g = split_ws(normalize_answer(utf8_to_u32(truth)));
  std::map<U, int64_t> cp, cg;
  for (const auto& w : p) ++cp[w];
  for (const auto& w : g) ++cg[w];
  int64_t same = 0;
  for (const auto& [w, n] : cp) {
    const auto it = cg.find(w);
    if (it != cg.end()) same += std::min(n, it->second);
  }
  if (same == 0) return 0.0;
  const double precision = 1.0 * static_cast<double>(same) / static_cast<double>(p.size());
  const double recall = 1.0 * static_cast<double>(same) / static_cast<double>(g.size());
  return (2 * precision * recall) / (precision + recall);
}

double rouge_l(const std::string& prediction, const std::string& truth) {
  const auto hyp = rouge_sentences(utf8_to_u32(prediction)), ref = rouge_sentences(utf8_to_u32(truth));
  if (hyp.empty() || ref.empty()) return 0.0;  // rouge raises ValueError; LongBench scores 0
  auto words_of = [](const U& sentence) { return split_on(sentence, U' '); };
  std::set<U> ref_words, hyp_words, lcs_union;
  for (const auto& s : ref)
    for (const auto& w : words_of(s)) ref_words.insert(w);
  for (const auto& s : hyp)
    for (const auto& w : words_of(s)) hyp_words.insert(w);
  try {
    for (const auto& r : ref)
      for (const auto& h : hyp) recon_lcs(words_of(r), words_of(h), lcs_union);
  } catch (const RecursionExceeded&) {
    return 0.0;
  }
  const double llcs = static_cast<double>(lcs_union.size());
  const double r_lcs = llcs / static_cast<double>(ref_words.size());
  const double p_lcs = llcs / static_cast<double>(hyp_words.size());
  return 2.0 * ((p_lcs * r_lcs) / (p_lcs + r_lcs + 1e-8));
}

double classification(const std::string& prediction, const std::string& truth, const std::vector<std::string>& all_classes) {
  std::vector<std::string> matches;
  for (const auto& c : all_classes) {
    if (prediction.find(c) != std::string::npos) matches.push_back(c);
  }
  // LongBench removes from the list it iterates over: Python's iterator keeps its index, so the
  // element after each removed one is skipped. Reproduced as written.
  for (size_t idx = 0; idx < matches.size(); ++idx) {
    const std::string term = matches[idx];
    if (truth.find(term) != std::string::npos && term != truth) {
      matches.erase(std::find(matches.begin(), matches.end(), term));
    }
  }
  if (std::find(matches.begin(), matches.end(), truth) == matches.end()) return 0.0;
  return 1.0 / static_cast<double>(matches.size());
}

double retrieval(const std::string& prediction, const std::string& truth) {
  const U g = utf8_to_u32(truth), key = U"Paragraph ";
  for (size_t p = g.find(key); p != U::npos; p = g.find(key, p + 1)) {
    size_t e = p + key.size();
    while (e < g.size() && g[e] >= '0' && g[e] <= '9') ++e;
    if (e > p + key.size()) return share_equal(numbers(utf8_to_u32(prediction)), g.substr(p + key.size(), e - p - key.size()));
  }
  throw std::invalid_argument("retrieval: gold answer '" + truth + "' has no 'Paragraph N'");
}

double count(const std::string& prediction, const std::string& truth) {
  return share_equal(numbers(utf8_to_u32(prediction)), utf8_to_u32(truth));
}

double code_sim(const std::string& prediction, const std::string& truth) {
  U p = utf8_to_u32(prediction);
  p.erase(0, p.find_first_not_of(U'\n') == U::npos ? p.size() : p.find_first_not_of(U'\n'));
  U first;
  for (const U& line : split_on(p, U'\n')) {
    if (line.find(U'`') == U::npos && line.find(U'#') == U::npos && line.find(U"//") == U::npos) {
      first = line;
      break;
    }
  }
  return static_cast<double>(fuzz_ratio(u32_to_utf8(first), truth)) / 100;
}

double sequence_matcher_ratio(const std::u32string& a, const std::u32string& b) {
  const size_t la = a.size(), lb = b.size();
  std::map<char32_t, std::vector<size_t>> b2j;
  for (size_t j = 0; j < lb; ++j) b2j[b[j]].push_back(j);
  if (lb >= 200) {  // autojunk: elements more frequent than 1% + 1 of b do not seed matches
    const size_t ntest = lb / 100 + 1;
    for (auto it = b2j.begin(); it != b2j.end();) it = it->second.size() > ntest ? b2j.erase(it) : std::next(it);
  }
  auto longest = [&](size_t alo, size_t ahi, size_t blo, size_t bhi) {
    size_t besti = alo, bestj = blo, bestsize = 0;
    std::map<size_t, size_t> j2len;
    for (size_t i = alo; i < ahi; ++i) {
      std::map<size_t, size_t> next;
      const auto it = b2j.find(a[i]);
      if (it != b2j.end()) {
        for (size_t j : it->second) {
          if (j < blo) continue;
          if (j >= bhi) break;
          const auto prev = j > 0 ? j2len.find(j - 1) : j2len.end();
          const size_t k = next[j] = (prev == j2len.end() ? 0 : prev->second) + 1;
          if (k > bestsize) {
            besti = i - k + 1;
            bestj = j - k + 1;
            bestsize = k;
          }
        }
      }
      j2len = std::move(next);
    }
    // No element is junk (isjunk is None), so the match grows over any equal neighbours,
    // the "popular" ones included.
    while (besti > alo && bestj > blo && a[besti - 1] == b[bestj - 1]) {
      --besti;
      --bestj;
      ++bestsize;
    }
    while (besti + bestsize < ahi && bestj + bestsize < bhi && a[besti + bestsize] == b[bestj + bestsize]) ++bestsize;
    return std::array<size_t, 3>{besti, bestj, bestsize};
  };
  size_t matches = 0;
  std::vector<std::array<size_t, 4>> queue = {{0, la, 0, lb}};
  while (!queue.empty()) {
    const auto [alo, ahi, blo, bhi] = queue.back();
    queue.pop_back();
    const auto [i, j, k] = longest(alo, ahi, blo, bhi);
    if (k == 0) continue;
    matches += k;
    if (alo < i && blo < j) queue.push_back({alo, i, blo, j});
    if (i + k < ahi && j + k < bhi) queue.push_back({i + k, ahi, j + k, bhi});
  }
  const size_t length = la + lb;
  return length ? 2.0 * static_cast<double>(matches) / static_cast<double>(length) : 1.0;
}

int64_t fuzz_ratio(const std::string& a, const std::string& b) {
  if (a == b) return 100;  // check_for_equivalence runs before check_empty_string
  if (a.empty() || b.empty()) return 0;
  const double r = 100 * sequence_matcher_ratio(utf8_to_u32(a), utf8_to_u32(b));
  return static_cast<int64_t>(std::nearbyint(r));  // round(): ties to even
}

std::optional<std::string> metric_of(const std::string& dataset) {
  static const std::map<std::string, std::string> metrics = {
      {"narrativeqa", "qa_f1"},       {"qasper", "qa_f1"},       {"multifieldqa_en", "qa_f1"},
      {"hotpotqa", "qa_f1"},          {"2wikimqa", "qa_f1"},     {"musique", "qa_f1"},
      {"gov_report", "rouge"},        {"qmsum", "rouge"},        {"multi_news", "rouge"},
      {"trec", "classification"},     {"triviaqa", "qa_f1"},     {"samsum", "rouge"},
      {"passage_retrieval_en", "retrieval"}, {"passage_count", "count"}, {"lcc", "code_sim"},
      {"repobench-p", "code_sim"}};
  static const std::set<std::string> chinese = {"multifieldqa_zh", "dureader", "vcsum", "lsht", "passage_retrieval_zh"};
  const auto it = metrics.find(dataset);
  if (it != metrics.end()) return it->second;
  if (chinese.count(dataset)) return std::nullopt;
  std::string known;
  for (const auto& [d, m] : metrics) known += (known.empty() ? "" : ", ") + d;
  for (const auto& d : chinese) known += ", " + d;
  throw std::invalid_argument("unknown LongBench dataset '" + dataset + "'; known: " + known);
}

std::string apply_first_line_rule(const std::string& dataset, const std::string& prediction) {
  if (dataset != "trec" && dataset != "triviaqa" && dataset != "samsum" && dataset != "lsht") return prediction;
  const size_t start = prediction.find_first_not_of('\n');
  if (start == std::string::npos) return "";
  return prediction.substr(start, prediction.find('\n', start) - start);
}

double score_prediction(const std::string& dataset, const std::string& prediction, const std::vector<std::string>& answers,
                        const std::vector<std::string>& all_classes) {
  const auto metric = metric_of(dataset);
  if (!metric) throw std::invalid_argument("LongBench dataset '" + dataset + "' is Chinese: no word segmenter, unsupported");
  const std::string pred = apply_first_line_rule(dataset, prediction);
  double best = 0.0;
  for (const auto& truth : answers) {
    double s = 0.0;
    if (*metric == "qa_f1") s = qa_f1(pred, truth);
    else if (*metric == "rouge") s = rouge_l(pred, truth);
    else if (*metric == "classification") s = classification(pred, truth, all_classes);
    else if (*metric == "retrieval") s = retrieval(pred, truth);
    else if (*metric == "count") s = count(pred, truth);
    else s = code_sim(pred, truth);
    best = std::max(best, s);
  }
  return best;
}

double python_round2(double x) {
  if (!std::isfinite(x)) return x;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f", x);  // glibc: exact binary value, ties to even, like CPython
  return std::strtod(buf, nullptr);
}

double numpy_round2(double x) {
  return std::nearbyint(x * 100.0) / 100.0;
}

double numpy_sum(const std::vector<double>& v) {
  // numpy's pairwise summation: blocks of up to 128 summed with 8 accumulators, halves recursed.
  std::function<double(size_t, size_t)> sum = [&](size_t lo, size_t n) -> double {
    if (n < 8) {
      double res = 0.0;  // numpy starts from -0.0 and adds; the same for finite sums of >= 1 term
      for (size_t i = 0; i < n; ++i) res = i == 0 ? v[lo] : res + v[lo + i];
      return n == 0 ? 0.0 : res;
    }
    if (n <= 128) {
      double r[8];
      for (int k = 0; k < 8; ++k) r[k] = v[lo + k];
      size_t i = 8;
      for (; i < n - (n % 8); i += 8)
        for (int k = 0; k < 8; ++k) r[k] += v[lo + i + k];
      double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
      for (; i < n; ++i) res += v[lo + i];
      return res;
    }
    size_t n2 = n / 2;
    n2 -= n2 % 8;
    return sum(lo, n2) + sum(lo + n2, n - n2);
  };
  return sum(0, v.size());
}

}  // namespace lcb::longbench
