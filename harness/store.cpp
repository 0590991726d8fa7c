// The SQLite result store: schema creation and version checks, and the run and cell reads and writes.
#include "harness/store.h"

#include <sqlite3.h>

#include <stdexcept>
#include <utility>

namespace lcb::store {
namespace {

// The frozen schema of kSchemaVersion; changing it means a new version and a migration.
constexpr const char* kSchemaSql = R"sql(
CREATE TABLE runs (
  run_id INTEGER PRIMARY KEY AUTOINCREMENT,
  started_at TEXT NOT NULL,
  finished_at TEXT NOT NULL,
  config_json TEXT NOT NULL,
  "commit" TEXT NOT NULL,
  lcb_version TEXT NOT NULL,
  torch_version TEXT NOT NULL,
  device_name TEXT NOT NULL,
  build_type TEXT NOT NULL,
  host TEXT NOT NULL,
  command TEXT NOT NULL
);
CREATE TABLE cells (
  cell_key TEXT PRIMARY KEY,
  run_id INTEGER NOT NULL REFERENCES runs(run_id),
  impl TEXT NOT NULL,
  impl_family TEXT NOT NULL,
  task TEXT NOT NULL,
  task_version INTEGER NOT NULL,
  metric_version INTEGER NOT NULL,
  length INTEGER NOT NULL,
  depth REAL NOT NULL,
  seed INTEGER NOT NULL,
  batch INTEGER NOT NULL,
  dtype TEXT NOT NULL,
  device TEXT NOT NULL,
  device_name TEXT NOT NULL,
  status TEXT NOT NULL CHECK(status IN ('ok', 'unsupported', 'oom', 'error')),
  message TEXT NOT NULL,
  accuracy REAL,
  n_scored INTEGER NOT NULL,
  rel_l2_error REAL,
  mass_recall REAL,
  attention_flops REAL,
  selection_flops REAL,
  kept_pairs INTEGER,
  causal_pairs INTEGER,
  requested_density REAL,
  achieved_density REAL,
  latency_ms_median REAL,
  latency_ms_min REAL,
  latency_ms_max REAL,
  latency_repeats INTEGER NOT NULL,
  decode_ms_median REAL,
  decode_steps INTEGER NOT NULL,
  kv_cache_bytes INTEGER,
  peak_mem_bytes INTEGER,
  mem_kind TEXT NOT NULL,
  backend TEXT NOT NULL,
  "commit" TEXT NOT NULL,
  torch_version TEXT NOT NULL,
  lcb_version TEXT NOT NULL,
  repro TEXT NOT NULL,
  finished_at TEXT NOT NULL,
  extra_json TEXT NOT NULL
);
CREATE INDEX cells_by_run ON cells(run_id);
CREATE INDEX cells_by_impl_task_length ON cells(impl, task, length);
)sql";

// The run's fields other than run_id, which the database assigns.
template <class Run, class F>
void for_each_run_field(Run& r, F&& f) {
  f("started_at", r.started_at);
  f("finished_at", r.finished_at);
  f("config_json", r.config_json);
  f("commit", r.commit);
  f("lcb_version", r.lcb_version);
  f("torch_version", r.torch_version);
  f("device_name", r.device_name);
  f("build_type", r.build_type);
  f("host", r.host);
  f("command", r.command);
}

// Quoted because "commit" is an SQL keyword.
void append_column(std::string& list, const char* name) {
  list += (list.empty() ? "\"" : ", \"") + std::string(name) + "\"";
}

std::string cell_columns() {
  const CellRecord unused{};
  std::string list;
  for_each_cell_field(unused, [&](const char* name, const auto&) { append_column(list, name); });
  return list;
}

std::string run_columns() {
  const RunInfo unused{};
  std::string list;
  for_each_run_field(unused, [&](const char* name, const auto&) { append_column(list, name); });
  return list;
}

std::string placeholders(const std::string& columns) {
  std::string list = "?";
  for (char ch : columns) {
    if (ch == ',') list += ", ?";
  }
  return list;
}

[[noreturn]] void throw_error(sqlite3* db, const std::string& path, const std::string& doing) {
  throw std::runtime_error("results database " + path + ": " + doing + ": " + sqlite3_errmsg(db));
}

void exec_sql(sqlite3* db, const std::string& path, const char* sql, const std::string& doing) {
  if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) throw_error(db, path, doing);
}

void exec_sql(sqlite3* db, const std::string& path, const char* sql) {
  exec_sql(db, path, sql, std::string("running '") + sql + "'");
}

// Runs body inside BEGIN IMMEDIATE ... COMMIT, rolling back and rethrowing if anything fails.
template <class F>
void in_transaction(sqlite3* db, const std::string& path, F&& body) {
  exec_sql(db, path, "BEGIN IMMEDIATE");
  try {
    body();
    exec_sql(db, path, "COMMIT");
  } catch (...) {
    // Some errors already ended the transaction; a failed ROLLBACK then changes nothing.
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

// A prepared statement whose parameters are bound in order and whose columns are read by index.
class Statement {
 public:
  Statement(sqlite3* db, std::string path, const std::string& sql, std::string doing)
      : db_(db), path_(std::move(path)), doing_(std::move(doing)) {
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt_, nullptr) != SQLITE_OK) {
      fail(" (preparing the statement)");
    }
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  void bind(const std::string& v) {
    check_bind(sqlite3_bind_text(stmt_, ++bound_, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
  }
  void bind(int64_t v) { check_bind(sqlite3_bind_int64(stmt_, ++bound_, v)); }
  void bind(double v) { check_bind(sqlite3_bind_double(stmt_, ++bound_, v)); }
  template <class T>
  void bind(const std::optional<T>& v) {
    if (v) {
      bind(*v);
    } else {
      check_bind(sqlite3_bind_null(stmt_, ++bound_));
    }
  }

  // True while a row is available; false once the statement is done.
  bool step() {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc != SQLITE_DONE) fail("");
    return false;
  }

  void read(int col, std::string& v) const {
    const auto* text = static_cast<const char*>(sqlite3_column_blob(stmt_, col));
    v.assign(text ? text : "", static_cast<size_t>(sqlite3_column_bytes(stmt_, col)));
  }
  void read(int col, int64_t& v) const { v = sqlite3_column_int64(stmt_, col); }
  void read(int col, double& v) const { v = sqlite3_column_double(stmt_, col); }
  template <class T>
  void read(int col, std::optional<T>& v) const {
    if (sqlite3_column_type(stmt_, col) == SQLITE_NULL) {
      v.reset();
    } else {
      read(col, v.emplace());
    }
  }

 private:
  void check_bind(int rc) {
    if (rc != SQLITE_OK) fail(" (binding parameter " + std::to_string(bound_) + ")");
  }
  [[noreturn]] void fail(const std::string& detail) const { throw_error(db_, path_, doing_ + detail); }

  sqlite3* db_;
  std::string path_;
  std::string doing_;
  sqlite3_stmt* stmt_ = nullptr;
  int bound_ = 0;
};

sqlite3* open_database(const std::string& path) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  if (rc != SQLITE_OK) {
    const std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close_v2(db);
    throw std::runtime_error("results database " + path + ": opening: " + msg);
  }
  return db;
}

int64_t query_integer(sqlite3* db, const std::string& path, const char* sql, const std::string& doing) {
  Statement s(db, path, sql, doing);
  s.step();
  int64_t n = 0;
  s.read(0, n);
  return n;
}

int read_version(sqlite3* db, const std::string& path) {
  return static_cast<int>(query_integer(db, path, "PRAGMA user_version", "reading the schema version"));
}

// Re-reads the version inside the write transaction: another process may have created the schema
// since this one first looked.
int create_schema_if_empty(sqlite3* db, const std::string& path) {
  int version = 0;
  in_transaction(db, path, [&] {
    version = read_version(db, path);
    if (version != 0) return;
    if (query_integer(db, path, "SELECT count(*) FROM sqlite_master", "counting tables") > 0) {
      throw std::runtime_error("results database " + path +
                               " has tables but no schema version; it is not an lcb results database");
    }
    exec_sql(db, path, kSchemaSql, "creating the schema");
    exec_sql(db, path, ("PRAGMA user_version = " + std::to_string(kSchemaVersion)).c_str());
    version = kSchemaVersion;
  });
  return version;
}

void check_version(const std::string& path, int version) {
  const std::string found = "results database " + path + " has schema version " + std::to_string(version);
  const std::string ours = "this build's " + std::to_string(kSchemaVersion);
  if (version > kSchemaVersion) throw std::runtime_error(found + ", newer than " + ours + "; use a newer lcb");
  if (version < kSchemaVersion) {
    throw std::runtime_error(found + ", older than " + ours +
                             ", and no migration exists; use the lcb that wrote it or start a new database");
  }
}

}  // namespace

Store::Store(const std::string& path) : db_(open_database(path)), path_(path) {
  try {
    // The busy timeout comes first so that switching to WAL waits out other connections too.
    exec("PRAGMA busy_timeout=10000");
    exec("PRAGMA journal_mode=WAL");
    exec("PRAGMA foreign_keys=ON");
    int version = schema_version();
    if (version == 0) version = create_schema_if_empty(db_, path_);
    check_version(path_, version);
  } catch (...) {
    sqlite3_close_v2(db_);
    throw;
  }
}

Store::~Store() { sqlite3_close_v2(db_); }

void Store::exec(const char* sql) const { exec_sql(db_, path_, sql); }

int Store::schema_version() const { return read_version(db_, path_); }

int64_t Store::begin_run(RunInfo& info) {
  const std::string columns = run_columns();
  Statement s(db_, path_, "INSERT INTO runs (" + columns + ") VALUES (" + placeholders(columns) + ")",
              "inserting a run");
  for_each_run_field(info, [&](const char*, const auto& v) { s.bind(v); });
  s.step();
  info.run_id = sqlite3_last_insert_rowid(db_);
  return info.run_id;
}

void Store::finish_run(int64_t run_id, const std::string& finished_at) {
  const std::string doing = "finishing run " + std::to_string(run_id);
  Statement s(db_, path_, "UPDATE runs SET finished_at = ? WHERE run_id = ?", doing);
  s.bind(finished_at);
  s.bind(run_id);
  s.step();
  if (sqlite3_changes(db_) == 0) {
    throw std::runtime_error("results database " + path_ + ": " + doing + ": no such run");
  }
}

std::set<std::string> Store::finished_keys(bool include_failed) const {
  Statement s(db_, path_,
              "SELECT cell_key FROM cells WHERE status IN ('ok', 'unsupported')"
              " OR (? AND status IN ('oom', 'error'))",
              "reading finished cell keys");
  s.bind(int64_t{include_failed});
  std::set<std::string> keys;
  while (s.step()) {
    std::string key;
    s.read(0, key);
    keys.insert(std::move(key));
  }
  return keys;
}

void Store::put_cell(const CellRecord& cell) {
  const std::string columns = cell_columns();
  Statement s(db_, path_,
              "INSERT OR REPLACE INTO cells (" + columns + ") VALUES (" + placeholders(columns) + ")",
              "storing cell " + cell.cell_key);
  for_each_cell_field(cell, [&](const char*, const auto& v) { s.bind(v); });
  in_transaction(db_, path_, [&] { s.step(); });
}

std::vector<CellRecord> Store::cells(int64_t run_id) const {
  // cell_key last makes the order total, so repeated reads agree.
  Statement s(db_, path_,
              "SELECT " + cell_columns() + " FROM cells" + (run_id > 0 ? " WHERE run_id = ?" : "") +
                  " ORDER BY impl, task, length, depth, seed, cell_key",
              "reading cells");
  if (run_id > 0) s.bind(run_id);
  std::vector<CellRecord> out;
  while (s.step()) {
    CellRecord& c = out.emplace_back();
    int col = 0;
    for_each_cell_field(c, [&](const char*, auto& v) { s.read(col++, v); });
  }
  return out;
}

std::vector<RunInfo> Store::runs() const {
  Statement s(db_, path_, "SELECT run_id, " + run_columns() + " FROM runs ORDER BY run_id", "reading runs");
  std::vector<RunInfo> out;
  while (s.step()) {
    RunInfo& r = out.emplace_back();
    s.read(0, r.run_id);
    int col = 1;
    for_each_run_field(r, [&](const char*, auto& v) { s.read(col++, v); });
  }
  return out;
}

}  // namespace lcb::store
