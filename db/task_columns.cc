#include "db/task_columns.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <numeric>
#include <tuple>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "db/pareto_front.h"

namespace ktune {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr char kMagic[] = "KTC1";

// Reorders `v` so that v[i] becomes old v[order[i]].
template <typename T>
void Permute(std::vector<T>& v, const std::vector<size_t>& order) {
  std::vector<T> out;
  out.reserve(order.size());
  for (size_t i : order) out.push_back(v[i]);
  v = std::move(out);
}

template <typename T>
void KeepIf(std::vector<T>& v, const std::vector<bool>& keep) {
  size_t w = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    if (keep[i]) v[w++] = v[i];
  }
  v.resize(w);
}

// --- encoding ----------------------------------------------------------------------------------

class Writer {
 public:
  template <typename T>
  void Put(T x) {
    out_.append(reinterpret_cast<const char*>(&x), sizeof x);  // x86-64, arm64: little-endian
  }
  void PutString(const std::string& s) {
    Put(static_cast<uint32_t>(s.size()));
    out_ += s;
  }
  template <typename T>
  void PutArray(const std::vector<T>& v) {
    if (!v.empty()) out_.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(absl::string_view in) : in_(in) {}
  template <typename T>
  bool Get(T& x) {
    if (in_.size() < sizeof x) return false;
    std::memcpy(&x, in_.data(), sizeof x);
    in_.remove_prefix(sizeof x);
    return true;
  }
  bool GetString(std::string& s) {
    uint32_t n = 0;
    if (!Get(n) || in_.size() < n) return false;
    s.assign(in_.data(), n);
    in_.remove_prefix(n);
    return true;
  }
  template <typename T>
  bool GetArray(std::vector<T>& v, size_t n) {
    if (n > in_.size() / sizeof(T)) return false;
    v.resize(n);
    if (n > 0) std::memcpy(v.data(), in_.data(), n * sizeof(T));
    in_.remove_prefix(n * sizeof(T));
    return true;
  }
  bool done() const { return in_.empty(); }

 private:
  absl::string_view in_;
};

enum ValueType : uint8_t { kInt = 0, kDouble = 1, kString = 2 };

}  // namespace

Configuration TaskColumns::ConfigOf(size_t i) const {
  Configuration config;
  const size_t n = params.size();
  for (size_t p = 0; p < n; ++p) {
    const int32_t v = value_index[i * n + p];
    if (v >= 0) config.emplace(params[p], values[p][v]);
  }
  return config;
}

std::optional<std::vector<int32_t>> TaskColumns::IndicesOf(const Configuration& config) const {
  std::vector<int32_t> row(params.size(), -1);
  size_t found = 0;
  for (size_t p = 0; p < params.size(); ++p) {
    auto it = config.find(params[p]);
    if (it == config.end()) continue;
    auto v = std::find(values[p].begin(), values[p].end(), it->second);
    if (v == values[p].end()) return std::nullopt;
    row[p] = static_cast<int32_t>(v - values[p].begin());
    ++found;
  }
  if (found != config.size()) return std::nullopt;
  return row;
}

bool TaskColumns::HasConfig(size_t i, const std::vector<int32_t>& indices) const {
  return std::equal(indices.begin(), indices.end(), value_index.begin() + i * params.size());
}

void TaskColumnsBuilder::Add(int64_t handle, const Record& r, absl::string_view record_id) {
  TaskColumns& c = columns_;
  // A parameter no record had yet: every row gains it, absent.
  for (const auto& [name, value] : r.config) {
    if (std::find(c.params.begin(), c.params.end(), name) != c.params.end()) continue;
    const size_t n = c.params.size();
    std::vector<int32_t> widened(c.size() * (n + 1), -1);
    for (size_t i = 0; i < c.size(); ++i) {
      std::copy_n(c.value_index.begin() + i * n, n, widened.begin() + i * (n + 1));
    }
    c.value_index = std::move(widened);
    c.params.push_back(name);
    c.values.emplace_back();
    lookup_.emplace_back();
  }
  for (size_t p = 0; p < c.params.size(); ++p) {
    auto it = r.config.find(c.params[p]);
    if (it == r.config.end()) {
      c.value_index.push_back(-1);
      continue;
    }
    auto [v, added] = lookup_[p].try_emplace(it->second, static_cast<int32_t>(c.values[p].size()));
    if (added) c.values[p].push_back(it->second);
    c.value_index.push_back(v->second);
  }
  c.handles.push_back(handle);
  c.status.push_back(r.status);
  c.time_ms.push_back(r.time_ms.value_or(kNaN));
  c.trade_off_ms.push_back(TradeOffTimeMs(r).value_or(kNaN));
  c.max_rel_error.push_back(r.max_rel_error.value_or(kNaN));
  c.measured_at_us.push_back(r.measured_at_us.value_or(TaskColumns::kUnknownTime));
  uint64_t id = 0;
  if (!absl::SimpleHexAtoi(record_id, &id)) id = 0;  // RecordId() is always 16 hex digits
  c.uid.push_back(id);
}

void TaskColumns::Append(const TaskColumns& other) {
  // other's parameter p is this one's param_at[p]; its value v of p is value_at[p][v].
  std::vector<size_t> param_at;
  std::vector<std::vector<int32_t>> value_at;
  const size_t before = params.size();
  for (size_t p = 0; p < other.params.size(); ++p) {
    auto it = std::find(params.begin(), params.end(), other.params[p]);
    if (it == params.end()) {
      params.push_back(other.params[p]);
      values.emplace_back();
      it = params.end() - 1;
    }
    const size_t q = it - params.begin();
    param_at.push_back(q);
    std::map<ParamValue, int32_t> index;
    for (size_t v = 0; v < values[q].size(); ++v) index.emplace(values[q][v], v);
    std::vector<int32_t>& map = value_at.emplace_back();
    for (const ParamValue& value : other.values[p]) {
      auto [v, added] = index.try_emplace(value, static_cast<int32_t>(values[q].size()));
      if (added) values[q].push_back(value);
      map.push_back(v->second);
    }
  }
  const size_t n = params.size();
  if (n != before) {  // rows here gain the new parameters, absent
    std::vector<int32_t> widened(size() * n, -1);
    for (size_t i = 0; i < size(); ++i) {
      std::copy_n(value_index.begin() + i * before, before, widened.begin() + i * n);
    }
    value_index = std::move(widened);
  }
  const size_t m = other.params.size();
  for (size_t i = 0; i < other.size(); ++i) {
    const size_t row = value_index.size();
    value_index.resize(row + n, -1);
    for (size_t p = 0; p < m; ++p) {
      const int32_t v = other.value_index[i * m + p];
      if (v >= 0) value_index[row + param_at[p]] = value_at[p][v];
    }
  }
  handles.insert(handles.end(), other.handles.begin(), other.handles.end());
  status.insert(status.end(), other.status.begin(), other.status.end());
  time_ms.insert(time_ms.end(), other.time_ms.begin(), other.time_ms.end());
  trade_off_ms.insert(trade_off_ms.end(), other.trade_off_ms.begin(), other.trade_off_ms.end());
  max_rel_error.insert(max_rel_error.end(), other.max_rel_error.begin(),
                       other.max_rel_error.end());
  measured_at_us.insert(measured_at_us.end(), other.measured_at_us.begin(),
                        other.measured_at_us.end());
  uid.insert(uid.end(), other.uid.begin(), other.uid.end());
}

void TaskColumns::KeepRows(const std::vector<bool>& keep) {
  const size_t n = params.size();
  size_t w = 0;
  for (size_t i = 0; i < size(); ++i) {
    if (!keep[i]) continue;
    if (w != i) std::copy_n(value_index.begin() + i * n, n, value_index.begin() + w * n);
    ++w;
  }
  value_index.resize(w * n);
  KeepIf(handles, keep);
  KeepIf(status, keep);
  KeepIf(time_ms, keep);
  KeepIf(trade_off_ms, keep);
  KeepIf(max_rel_error, keep);
  KeepIf(measured_at_us, keep);
  KeepIf(uid, keep);
}

void TaskColumns::SortIntoTaskOrder() {
  std::vector<size_t> order(size());
  std::iota(order.begin(), order.end(), 0);
  // kUnknownTime is the smallest int64_t: unknown times sort first.
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return std::tie(measured_at_us[a], uid[a]) < std::tie(measured_at_us[b], uid[b]);
  });
  const size_t n = params.size();
  std::vector<int32_t> rows;
  rows.reserve(value_index.size());
  for (size_t i : order) {
    rows.insert(rows.end(), value_index.begin() + i * n, value_index.begin() + (i + 1) * n);
  }
  value_index = std::move(rows);
  Permute(handles, order);
  Permute(status, order);
  Permute(time_ms, order);
  Permute(trade_off_ms, order);
  Permute(max_rel_error, order);
  Permute(measured_at_us, order);
  Permute(uid, order);
}

std::string EncodeTaskColumns(const TaskColumns& c) {
  Writer w;
  w.PutArray(std::vector<char>(kMagic, kMagic + 4));
  w.Put(static_cast<uint64_t>(c.size()));
  w.Put(static_cast<uint32_t>(c.params.size()));
  for (size_t p = 0; p < c.params.size(); ++p) {
    w.PutString(c.params[p]);
    w.Put(static_cast<uint32_t>(c.values[p].size()));
    for (const ParamValue& v : c.values[p]) {
      if (const auto* i = std::get_if<int64_t>(&v)) {
        w.Put(kInt);
        w.Put(*i);
      } else if (const auto* d = std::get_if<double>(&v)) {
        w.Put(kDouble);
        w.Put(*d);
      } else {
        w.Put(kString);
        w.PutString(std::get<std::string>(v));
      }
    }
  }
  w.PutArray(c.handles);
  std::vector<uint8_t> status;
  for (MeasurementStatus s : c.status) status.push_back(static_cast<uint8_t>(s));
  w.PutArray(status);
  w.PutArray(c.time_ms);
  w.PutArray(c.trade_off_ms);
  w.PutArray(c.max_rel_error);
  w.PutArray(c.measured_at_us);
  w.PutArray(c.uid);
  w.PutArray(c.value_index);
  return w.Take();
}

absl::StatusOr<TaskColumns> DecodeTaskColumns(absl::string_view blob) {
  auto bad = [](absl::string_view what) {
    return absl::DataLossError(absl::StrCat("a task's stored columns are damaged: ", what));
  };
  Reader r(blob);
  std::vector<char> magic;
  if (!r.GetArray(magic, 4) || std::memcmp(magic.data(), kMagic, 4) != 0) {
    return bad("no KTC1 header");
  }
  TaskColumns c;
  uint64_t n = 0;
  uint32_t params = 0;
  if (!r.Get(n) || !r.Get(params)) return bad("truncated header");
  for (uint32_t p = 0; p < params; ++p) {
    std::string name;
    uint32_t count = 0;
    if (!r.GetString(name) || !r.Get(count)) return bad("truncated parameter");
    std::vector<ParamValue>& vs = c.values.emplace_back();
    for (uint32_t k = 0; k < count; ++k) {
      uint8_t type = 0;
      if (!r.Get(type)) return bad("truncated value");
      if (type == kInt) {
        int64_t i = 0;
        if (!r.Get(i)) return bad("truncated value");
        vs.emplace_back(i);
      } else if (type == kDouble) {
        double d = 0;
        if (!r.Get(d)) return bad("truncated value");
        vs.emplace_back(d);
      } else if (type == kString) {
        std::string s;
        if (!r.GetString(s)) return bad("truncated value");
        vs.emplace_back(std::move(s));
      } else {
        return bad("unknown value type");
      }
    }
    c.params.push_back(std::move(name));
  }
  std::vector<uint8_t> status;
  if (!r.GetArray(c.handles, n) || !r.GetArray(status, n) || !r.GetArray(c.time_ms, n) ||
      !r.GetArray(c.trade_off_ms, n) || !r.GetArray(c.max_rel_error, n) ||
      !r.GetArray(c.measured_at_us, n) || !r.GetArray(c.uid, n) ||
      !r.GetArray(c.value_index, n * params) || !r.done()) {
    return bad("columns of the wrong length");
  }
  for (uint8_t s : status) {
    if (s >= kMeasurementStatusCount) return bad("unknown status");
    c.status.push_back(static_cast<MeasurementStatus>(s));
  }
  for (size_t i = 0; i < c.value_index.size(); ++i) {
    const int32_t v = c.value_index[i];
    if (v < -1 || (v >= 0 && static_cast<size_t>(v) >= c.values[i % params].size())) {
      return bad("a value index out of range");
    }
  }
  return c;
}

}  // namespace ktune
