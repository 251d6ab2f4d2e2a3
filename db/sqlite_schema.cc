#include "db/sqlite_schema.h"

namespace ktune {

const std::vector<const char*> kSqliteMigrations = {
    // 0 -> 1: measurements. Workloads (kernel + version + problem) are separate from records, as
    // in TVM MetaSchedule; devices carry the three lookup levels.
    R"sql(
CREATE TABLE meta (
  key TEXT PRIMARY KEY NOT NULL,
  value TEXT NOT NULL
);
CREATE TABLE kernels (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  version TEXT NOT NULL,
  UNIQUE (name, version)
);
CREATE TABLE workloads (
  id INTEGER PRIMARY KEY,
  kernel_id INTEGER NOT NULL REFERENCES kernels (id),
  problem_json TEXT NOT NULL,
  problem_hash TEXT NOT NULL,
  UNIQUE (kernel_id, problem_hash)
);
CREATE TABLE devices (
  id INTEGER PRIMARY KEY,
  fingerprint_hash TEXT NOT NULL UNIQUE,
  fingerprint_json TEXT NOT NULL,
  device_class TEXT NOT NULL,
  family TEXT NOT NULL
);
CREATE INDEX devices_by_class ON devices (device_class);
CREATE INDEX devices_by_family ON devices (family);
CREATE TABLE records (
  id INTEGER PRIMARY KEY,
  record_uid TEXT NOT NULL UNIQUE,
  workload_id INTEGER NOT NULL REFERENCES workloads (id),
  device_id INTEGER NOT NULL REFERENCES devices (id),
  config_json TEXT NOT NULL,
  config_hash TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('ok', 'compile_error', 'runtime_error', 'timeout',
                                         'wrong_result', 'invalid_config', 'lost')),
  message TEXT NOT NULL,
  time_ms REAL CHECK ((status = 'ok') = (time_ms IS NOT NULL)),
  repeat_times_ms BLOB NOT NULL,  -- little-endian float64 array
  median_ms REAL,
  min_ms REAL,
  stddev_ms REAL,
  worker TEXT NOT NULL,
  measured_at_us INTEGER,
  source TEXT NOT NULL
);
CREATE INDEX records_by_task ON records (workload_id, device_id, status, time_ms);
INSERT INTO meta (key, value) VALUES ('version', '1');
)sql",
    // 1 -> 2: fleet jobs and agent checkpoints.
    R"sql(
CREATE TABLE jobs (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  spec_json TEXT NOT NULL,
  strategy TEXT NOT NULL,
  priority INTEGER NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'paused', 'done', 'failed',
                                       'cancelled')),
  message TEXT NOT NULL,
  created_at_us INTEGER NOT NULL,
  updated_at_us INTEGER NOT NULL
);
CREATE TABLE job_tasks (
  job_id INTEGER NOT NULL REFERENCES jobs (id),
  task_index INTEGER NOT NULL,
  kernel TEXT NOT NULL,
  kernel_version TEXT NOT NULL,
  problem_json TEXT NOT NULL,
  device_class TEXT NOT NULL,
  state TEXT NOT NULL,
  budget INTEGER NOT NULL,
  measurements_done INTEGER NOT NULL,
  PRIMARY KEY (job_id, task_index)
);
CREATE TABLE agent_checkpoints (
  key TEXT PRIMARY KEY NOT NULL,
  blob BLOB NOT NULL,
  updated_at_us INTEGER NOT NULL
);
UPDATE meta SET value = '2' WHERE key = 'version';
)sql",
    // 2 -> 3: a client's opaque payload per record (Record::payload); '' for existing records.
    R"sql(
ALTER TABLE records ADD COLUMN payload TEXT NOT NULL DEFAULT '';
UPDATE meta SET value = '3' WHERE key = 'version';
)sql",
    // 3 -> 4: production telemetry (apart from records) and stale task boundaries.
    R"sql(
CREATE TABLE telemetry (
  id INTEGER PRIMARY KEY,
  workload_id INTEGER NOT NULL REFERENCES workloads (id),
  device_id INTEGER NOT NULL REFERENCES devices (id),
  config_json TEXT NOT NULL,
  count INTEGER NOT NULL CHECK (count >= 1),
  mean_ms REAL NOT NULL CHECK (mean_ms > 0),
  stddev_ms REAL NOT NULL CHECK (stddev_ms >= 0),
  window_start_us INTEGER NOT NULL,
  window_end_us INTEGER NOT NULL,
  received_at_us INTEGER NOT NULL,
  reporter TEXT NOT NULL
);
CREATE TABLE stale_tasks (
  kernel TEXT NOT NULL,
  problem_hash TEXT NOT NULL,
  device_class TEXT NOT NULL,
  before_us INTEGER NOT NULL,
  PRIMARY KEY (kernel, problem_hash, device_class)
);
UPDATE meta SET value = '4' WHERE key = 'version';
)sql",
    // 4 -> 5: precision under an accuracy budget. Records gain the measured error
    // (Record::max_rel_error, NULL when unknown) and the status 'too_inaccurate'. SQLite cannot
    // alter a CHECK constraint, so the table is rebuilt (SQLite's documented procedure: create,
    // copy, drop, rename), keeping every row id.
    R"sql(
CREATE TABLE records_v5 (
  id INTEGER PRIMARY KEY,
  record_uid TEXT NOT NULL UNIQUE,
  workload_id INTEGER NOT NULL REFERENCES workloads (id),
  device_id INTEGER NOT NULL REFERENCES devices (id),
  config_json TEXT NOT NULL,
  config_hash TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('ok', 'compile_error', 'runtime_error', 'timeout',
                                         'wrong_result', 'invalid_config', 'lost',
                                         'too_inaccurate')),
  message TEXT NOT NULL,
  time_ms REAL CHECK ((status = 'ok') = (time_ms IS NOT NULL)),
  repeat_times_ms BLOB NOT NULL,  -- little-endian float64 array
  median_ms REAL,
  min_ms REAL,
  stddev_ms REAL,
  worker TEXT NOT NULL,
  measured_at_us INTEGER,
  source TEXT NOT NULL,
  payload TEXT NOT NULL DEFAULT '',
  max_rel_error REAL CHECK (max_rel_error IS NULL OR max_rel_error >= 0)
);
INSERT INTO records_v5 (id, record_uid, workload_id, device_id, config_json, config_hash, status,
                        message, time_ms, repeat_times_ms, median_ms, min_ms, stddev_ms, worker,
                        measured_at_us, source, payload)
  SELECT id, record_uid, workload_id, device_id, config_json, config_hash, status, message,
         time_ms, repeat_times_ms, median_ms, min_ms, stddev_ms, worker, measured_at_us, source,
         payload FROM records;
DROP TABLE records;
ALTER TABLE records_v5 RENAME TO records;
CREATE INDEX records_by_task ON records (workload_id, device_id, status, time_ms);
UPDATE meta SET value = '5' WHERE key = 'version';
)sql",
    // 5 -> 6: the records as columns (db/sqlite_task_columns.h), which whole-task summaries
    // (`ktune explain`) read instead of every record. The migration then fills the table from the
    // records (StoreColumnsOfAllRecords): it needs C++ to encode them.
    R"sql(
CREATE TABLE task_columns (
  workload_id INTEGER NOT NULL REFERENCES workloads (id),
  device_id INTEGER NOT NULL REFERENCES devices (id),
  chunk INTEGER NOT NULL,
  records INTEGER NOT NULL,
  blob BLOB NOT NULL,  -- EncodeTaskColumns
  PRIMARY KEY (workload_id, device_id, chunk)
);
UPDATE meta SET value = '6' WHERE key = 'version';
)sql",
};

int CurrentSqliteSchemaVersion() { return static_cast<int>(kSqliteMigrations.size()); }

}  // namespace ktune
