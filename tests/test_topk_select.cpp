// Exact top-k's radix select arithmetic (attention_impls/cuda/topk_select.h, which the CUDA
// select kernel compiles): score keys and bounds, the first level's ranges, the split of a range
// into parts, and the whole select run level by level on the CPU (counts by plain loops in place
// of the kernel's shared-memory histograms) against sorting, on rows built to be hard: ties,
// all-equal rows, magnitudes outside the first level's exponents, signed zeros, infinities.
#include "attention_impls/cuda/topk_select.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <vector>

namespace lcb {
namespace {

namespace tk = attn::cuda::topk;

std::vector<float> special_scores() {
  const float inf = std::numeric_limits<float>::infinity();
  return {0.0f, -0.0f, inf, -inf, 1e-45f, -1e-45f, 1e-30f, -1e-30f, 1.0f / 64, -1.0f / 64, 0.999f / 64, 1023.9f,
          1024.0f, -1024.0f, 3e38f, -3e38f, 1.0f, -1.0f, 11.3f, -11.3f};
}

// Scores drawn at several scales, with the special values mixed in.
std::vector<float> random_scores(std::mt19937& gen, size_t n) {
  std::vector<float> x = special_scores();
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> scale(-40, 40);
  while (x.size() < n) x.push_back(normal(gen) * std::ldexp(1.0f, scale(gen)));
  return x;
}

TEST(TopKSelect, KeysOrderScoresAndEqualScoresShareAKey) {
  std::mt19937 gen(1);
  const std::vector<float> x = random_scores(gen, 2000);
  for (size_t i = 0; i < x.size(); ++i) {
    for (size_t j = 0; j < x.size(); j += 7) {
      ASSERT_EQ(x[i] < x[j], tk::key(x[i]) < tk::key(x[j])) << x[i] << " vs " << x[j];
      ASSERT_EQ(x[i] == x[j], tk::key(x[i]) == tk::key(x[j])) << x[i] << " vs " << x[j];
    }
  }
}

// The attention kernel keeps x >= score_of_key(bound); the select counts key(x) >= bound.
TEST(TopKSelect, BoundAsAScoreKeepsTheSameScoresAsTheKey) {
  std::mt19937 gen(2);
  const std::vector<float> x = random_scores(gen, 3000);
  std::vector<uint32_t> bounds = {0u,          0x007fffffu, 0x00800000u, 0x7f7fffffu, 0x7fffffffu,
                                  0x80000000u, 0x80000001u, 0xff7fffffu, 0xff800000u, 0xffffffffu};
  std::uniform_int_distribution<uint32_t> any;
  for (int i = 0; i < 2000; ++i) bounds.push_back(any(gen));
  for (float v : x) bounds.push_back(tk::key(v));  // bounds are range starts; scores' own keys are the edge cases
  for (uint32_t b : bounds) {
    const float t = tk::score_of_key(b);
    for (float v : x) ASSERT_EQ(v >= t, tk::key(v) >= b) << "score " << v << " bound key " << b;
  }
}

TEST(TopKSelect, FirstLevelRangesTileTheKeysInOrder) {
  uint64_t next = 0;
  for (int bin = 0; bin < 256; ++bin) {
    uint32_t lo, width;
    tk::first_level_range(bin, &lo, &width);
    EXPECT_EQ(lo, next) << "range " << bin;
    EXPECT_GT(width, 0u) << "range " << bin;
    EXPECT_LT(width, 1u << 31) << "range " << bin;  // kLevels - 1 splits of 256 reach one key
    next = static_cast<uint64_t>(lo) + width;
  }
  EXPECT_EQ(next, uint64_t{1} << 32);
  std::mt19937 gen(3);
  std::vector<float> x = random_scores(gen, 5000);
  std::sort(x.begin(), x.end());
  int last = -1;
  for (float v : x) {
    const int bin = tk::first_level_bin(v + 0.0f);
    ASSERT_GE(bin, last) << v;  // monotone
    last = bin;
    uint32_t lo, width;
    tk::first_level_range(bin, &lo, &width);
    const uint32_t k = tk::key(v);
    ASSERT_TRUE(k >= lo && k - lo < width) << v << " in range " << bin;
  }
}

// The first pass's word and count per score (first_level_count()) are first_level_bin()'s range
// as its histogram stores it (with 16-bit counts: word range % 128, high half from 128 on), and
// its floor test on the score itself (x >= the smallest score of a range) orders as the ranges.
TEST(TopKSelect, FirstPassCountsEachScoreInItsRangesWord) {
  std::mt19937 gen(5);
  const std::vector<float> x = random_scores(gen, 20000);
  for (float v : x) {
    const float z = v + 0.0f;
    const int bin = tk::first_level_bin(z);
    const tk::FirstLevelCount packed = tk::first_level_count(z, true), plain = tk::first_level_count(z, false);
    ASSERT_EQ(packed.word, static_cast<uint32_t>(bin & 127)) << v;
    ASSERT_EQ(packed.one, 1u << ((bin >> 7) * 16)) << v;
    ASSERT_EQ(plain.word, static_cast<uint32_t>(bin)) << v;
    ASSERT_EQ(plain.one, 1u) << v;
  }
  for (int b = 0; b < 256; ++b) {
    uint32_t lo, width;
    tk::first_level_range(b, &lo, &width);
    const float floor = tk::score_of_key(lo);
    for (float v : x) ASSERT_EQ(v >= floor, tk::first_level_bin(v + 0.0f) >= b) << "score " << v << " range " << b;
  }
}

TEST(TopKSelect, LevelShiftSplitsARangeIntoAtMost256Parts) {
  std::vector<uint32_t> widths;
  for (int p = 0; p < 32; ++p) {
    const uint32_t w = 1u << p;
    widths.insert(widths.end(), {w, w + 1, w - 1 == 0 ? 1 : w - 1});
  }
  widths.push_back(0xffffffffu);
  for (uint32_t w : widths) {
    const int s = tk::level_shift(w);
    const uint64_t parts = (uint64_t{w} + (uint64_t{1} << s) - 1) >> s;
    EXPECT_LE(parts, 256u) << "width " << w;
    if (s > 0) {
      EXPECT_GT((uint64_t{w} + (uint64_t{1} << (s - 1)) - 1) >> (s - 1), 256u) << "width " << w;
    }
  }
  // The widest first-level range reaches single keys within the remaining levels.
  for (int bin = 0; bin < 256; ++bin) {
    uint32_t lo, w;
    tk::first_level_range(bin, &lo, &w);
    int level = 1;
    while (w > 1) {
      w = std::min<uint64_t>(uint64_t{1} << tk::level_shift(w), w);
      ++level;
    }
    EXPECT_LE(level, tk::kLevels) << "range " << bin;
  }
  // A row gets candidates only for a first-level range of at most 2^24 keys: if its copy runs out
  // of room, levels 3 .. kLevels refine that range again, and must reach one key. 2^24 is the
  // widest range they can.
  auto splits = [](uint32_t w) {
    int n = 0;
    while (w > 1) {
      w = std::min<uint64_t>(uint64_t{1} << tk::level_shift(w), w);
      ++n;
    }
    return n;
  };
  for (uint32_t w : {1u << 24, (1u << 24) - 1, (1u << 20) + 3, 257u, 2u}) {
    EXPECT_LE(splits(w), tk::kLevels - 2) << "width " << w;
  }
  EXPECT_GT(splits((1u << 24) + 1), tk::kLevels - 2);
}

// The select on one row, level by level as the kernel runs it: counts of the open range's 256
// parts, the part holding the need-th largest (scanning from the top), the step.
tk::RowState select_on_cpu(const std::vector<float>& x, int k, int* levels_used) {
  *levels_used = 0;
  if (static_cast<int>(x.size()) <= k) return tk::RowState{};  // resolved, bound 0: every key kept
  tk::RowState st;
  st.need = static_cast<uint32_t>(k);
  for (int level = 1; level <= tk::kLevels && st.need > 0; ++level) {
    std::vector<uint32_t> count(256, 0);
    const int shift = tk::level_shift(st.width);
    for (float v : x) {
      if (level == 1) {
        ++count[tk::first_level_bin(v + 0.0f)];
      } else if (tk::key(v) - st.lo < st.width) {
        ++count[(tk::key(v) - st.lo) >> shift];
      }
    }
    int part = -1, higher = 0;
    for (int d = 255; d >= 0; --d) {
      if (higher + static_cast<int>(count[d]) >= static_cast<int>(st.need)) {
        part = d;
        break;
      }
      higher += static_cast<int>(count[d]);
    }
    if (part < 0) return tk::RowState{};  // the counts lost scores: the caller's check fails
    st = tk::next_state(level, st, part, higher, [&](int d) { return count[d]; });
    *levels_used = level;
  }
  return st;
}

TEST(TopKSelect, SelectKeepsExactlyTheTopKOrItsTies) {
  std::mt19937 gen(4);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> small(0, 9);
  struct Row {
    const char* what;
    std::function<float()> draw;
  };
  const std::vector<Row> rows = {
      {"normal", [&] { return normal(gen); }},
      {"normal x 1e-5", [&] { return 1e-5f * normal(gen); }},
      {"normal x 1e6", [&] { return 1e6f * normal(gen); }},
      {"ten values", [&] { return static_cast<float>(small(gen)) - 4.5f; }},
      {"signed zeros", [&] { return small(gen) < 5 ? 0.0f : -0.0f; }},
      {"all equal", [&] { return 2.5f; }},
      {"close values", [&] { return 1.0f + 1e-7f * static_cast<float>(small(gen)); }},
      {"mixed scales", [&] { return normal(gen) * std::ldexp(1.0f, 3 * small(gen) - 15); }},
  };
  int max_levels = 0;
  for (const Row& row : rows) {
    for (int n : {1, 2, 7, 300, 5001}) {
      std::vector<float> x(static_cast<size_t>(n));
      for (float& v : x) v = row.draw();
      if (n > 2) x[1] = std::numeric_limits<float>::infinity();
      std::vector<float> sorted = x;
      std::sort(sorted.begin(), sorted.end(), std::greater<float>());
      for (int k : {1, 2, 5, n / 2, n - 1, n, n + 3}) {
        if (k < 1) continue;
        int levels = 0;
        const tk::RowState st = select_on_cpu(x, k, &levels);
        max_levels = std::max(max_levels, levels);
        ASSERT_EQ(st.need, 0u) << row.what << " n=" << n << " k=" << k << ": unresolved";
        const auto kept = std::count_if(x.begin(), x.end(), [&](float v) { return tk::key(v) >= st.bound; });
        if (k >= n) {
          EXPECT_EQ(kept, n) << row.what << " n=" << n << " k=" << k;
          continue;
        }
        const float kth = sorted[static_cast<size_t>(k - 1)];
        const auto at_least_kth = std::count_if(x.begin(), x.end(), [&](float v) { return v >= kth; });
        // The k largest and whatever ties the k-th: nothing below it, nothing missing.
        EXPECT_EQ(kept, at_least_kth) << row.what << " n=" << n << " k=" << k;
        EXPECT_GE(kept, k) << row.what << " n=" << n << " k=" << k;
        if (sorted[static_cast<size_t>(k)] < kth) {
          EXPECT_EQ(kept, k) << row.what << " n=" << n << " k=" << k;
        }
      }
    }
  }
  EXPECT_LE(max_levels, tk::kLevels);
  EXPECT_GE(max_levels, 3) << "the rows should need more than two levels somewhere";
}

}  // namespace
}  // namespace lcb
