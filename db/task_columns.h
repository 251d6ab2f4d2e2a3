// One task's records as columns (TuningDatabase::TaskColumns): what a summary of a whole task
// reads of every record (`ktune explain`), without each record's text. A configuration is a row
// of indices into per-parameter lists of distinct values, so grouping records by configuration or
// by a parameter's value is integer work, with no JSON to parse and no map to build.
//
// SqliteTuningDatabase keeps each (workload, device)'s columns encoded (EncodeTaskColumns) next to
// the records, appended to in the same transaction as them, so that reading a task's columns
// costs a few blobs rather than a row and a parsed configuration per record.
#ifndef KTUNE_DB_TASK_COLUMNS_H_
#define KTUNE_DB_TASK_COLUMNS_H_

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "db/record.h"

namespace ktune {

struct TaskColumns {
  // Parameter names (sorted) and, per parameter, its distinct values.
  std::vector<std::string> params;
  std::vector<std::vector<ParamValue>> values;

  // One entry per record, all of the same length. After SortIntoTaskOrder: TaskRecords' order.
  std::vector<int64_t> handles;  // TuningDatabase::RecordsByHandle reads the record whole
  std::vector<MeasurementStatus> status;
  std::vector<double> time_ms;        // NaN unless ok
  std::vector<double> trade_off_ms;   // TradeOffTimeMs (pareto_front.h); NaN when unset
  std::vector<double> max_rel_error;  // NaN when unknown
  // TaskRecords' order keys: measured_at_us (kUnknownTime when unset), then the record id's
  // 16 hex digits as a number (ordered as the id's text is).
  std::vector<int64_t> measured_at_us;
  std::vector<uint64_t> uid;
  // Row-major: value_index[record * params.size() + p], -1 when the record has no parameter p.
  std::vector<int32_t> value_index;

  static constexpr int64_t kUnknownTime = std::numeric_limits<int64_t>::min();

  size_t size() const { return handles.size(); }
  // Record i's configuration.
  Configuration ConfigOf(size_t i) const;
  // The row of indices `config` has here (-1 for each parameter it lacks); nullopt when it has a
  // parameter or a value that no record here has.
  std::optional<std::vector<int32_t>> IndicesOf(const Configuration& config) const;
  // Whether record i's configuration is `indices` (a row from IndicesOf).
  bool HasConfig(size_t i, const std::vector<int32_t>& indices) const;

  // Appends every record of `other`, its values mapped onto this one's lists.
  void Append(const TaskColumns& other);
  // Keeps the records whose keep[i] is true, in their order.
  void KeepRows(const std::vector<bool>& keep);
  // Orders the records as TaskRecords does: unknown times first, then by time, ties by record id.
  void SortIntoTaskOrder();
};

// Builds TaskColumns one record at a time.
class TaskColumnsBuilder {
 public:
  // Appends `r` under `handle`; `record_id` is r.RecordId(), which callers have at hand.
  void Add(int64_t handle, const Record& r, absl::string_view record_id);
  TaskColumns Take() { return std::move(columns_); }

 private:
  TaskColumns columns_;
  std::vector<std::map<ParamValue, int32_t>> lookup_;  // per parameter: value -> its index
};

// The binary form a database stores (little-endian; "KTC1" first). DecodeTaskColumns gives back
// what was encoded, field for field; DataLoss for a blob that is not one.
std::string EncodeTaskColumns(const TaskColumns& columns);
absl::StatusOr<TaskColumns> DecodeTaskColumns(absl::string_view blob);

}  // namespace ktune

#endif  // KTUNE_DB_TASK_COLUMNS_H_
