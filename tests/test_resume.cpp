// A sweep killed with SIGKILL and restarted ends with exactly the cells of its config: none
// duplicated, none lost, and cells stored before the kill are not run again. Uses the real `lcb`
// binary and a real kill.
#include "harness/store.h"

#include <nlohmann/json.hpp>
#include "tests/temp_dir.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fcntl.h>
#include <fstream>
#include <map>
#include <set>
#include <thread>
#include <tuple>

namespace lcb {
namespace {

int64_t stored_cells(const std::string& db_path) {
  sqlite3* db = nullptr;
  int64_t n = -1;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 2000);
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM cells", -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
      n = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return n;
}

pid_t spawn_lcb(const std::vector<std::string>& args) {
  const pid_t pid = fork();
  if (pid == 0) {
    const int null = open("/dev/null", O_WRONLY);
    dup2(null, STDOUT_FILENO);
    dup2(null, STDERR_FILENO);
    std::vector<char*> argv = {const_cast<char*>(LCB_BINARY)};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(LCB_BINARY, argv.data());
    _exit(127);
  }
  return pid;
}

int wait_exit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

TEST(Resume, SigkillThenRestartGivesEveryCellOnce) {
  test::TempDir dir;
  const std::string config = dir.file("sweep.json"), db_path = dir.file("r.sqlite");
  std::vector<double> depths;
  for (int i = 0; i <= 49; ++i) depths.push_back(i / 49.0);
  const nlohmann::json cfg = {{"impls", {"dense", "swa:window=24"}},
                              {"tasks", {"needle_qkv:heads=2,kv_heads=1,head_dim=16,queries=4"}},
                              {"lengths", {128, 192}},
                              {"depths", depths},
                              {"seeds", {0, 1, 2}},
                              {"repeats", 2},
                              {"device", "cpu"}};
  std::ofstream(config) << cfg.dump();
  const int64_t total = 2 * 2 * 50 * 3;
  const std::vector<std::string> args = {"run", "--config", config, "--db", db_path};

  const pid_t pid = spawn_lcb(args);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (stored_cells(db_path) < 20 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  ASSERT_EQ(wait_exit(pid), -SIGKILL) << "lcb finished before it could be killed; make the sweep longer";

  std::map<std::string, std::string> before;  // key -> finished_at
  {
    const store::Store db(db_path);
    for (const auto& c : db.cells()) before[c.cell_key] = c.finished_at + "|" + std::to_string(c.run_id);
  }
  ASSERT_GE(before.size(), 20u);
  ASSERT_LT(static_cast<int64_t>(before.size()), total);

  ASSERT_EQ(wait_exit(spawn_lcb(args)), 0);

  const store::Store db(db_path);
  const auto cells = db.cells();
  ASSERT_EQ(static_cast<int64_t>(cells.size()), total);
  std::set<std::tuple<std::string, int64_t, double, int64_t>> seen;
  for (const auto& c : cells) {
    EXPECT_EQ(c.status, "ok") << c.message;
    EXPECT_TRUE(seen.insert({c.impl, c.length, c.depth, c.seed}).second) << "duplicate cell " << c.impl;
    const auto it = before.find(c.cell_key);
    if (it != before.end()) {
      EXPECT_EQ(it->second, c.finished_at + "|" + std::to_string(c.run_id)) << "stored cell was rerun";
    }
  }
  for (const std::string impl : {"dense", "swa:window=24,sink=0"})
    for (int64_t L : {128, 192})
      for (double d : depths)
        for (int64_t s : {0, 1, 2}) EXPECT_TRUE(seen.count({impl, L, d, s})) << impl << " L=" << L << " d=" << d;
  EXPECT_EQ(db.runs().size(), 2u);
}

}  // namespace
}  // namespace lcb
