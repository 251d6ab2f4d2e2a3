#include "db/interchange/record_files.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "common/file_util.h"
#include "common/hash.h"
#include "common/json_error.h"
#include "common/status_macros.h"
#include "kernels/configuration.h"

namespace ktune {
namespace {

using Json = nlohmann::json;

std::string BaseName(const std::string& path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// "line L, column C" of byte offset `byte` (1-based, as nlohmann reports it).
std::string Position(const std::string& text, size_t byte) {
  size_t end = std::min(byte, text.size());
  size_t line = 1, col = 1;
  for (size_t i = 0; i + 1 < end; ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return absl::StrCat("line ", line, ", column ", col);
}

absl::Status FileError(const std::string& path, const std::string& where, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", where, ": ", what));
}

// A string field of `object`, `fallback` where it is missing; InvalidArgument where it is not a
// string (nlohmann's value() would throw).
absl::StatusOr<std::string> StringField(const Json& object, const char* key,
                                        const std::string& fallback) {
  if (!object.contains(key) || object[key].is_null()) return fallback;
  if (!object[key].is_string()) {
    return absl::InvalidArgumentError(absl::StrCat("\"", key, "\" is not a string"));
  }
  return object[key].get<std::string>();
}

// "{a, b, c}": a configuration's parameter names, in order.
std::string KeyList(const Configuration& c) {
  return absl::StrCat(
      "{", absl::StrJoin(c, ", ", [](std::string* out, const auto& kv) { out->append(kv.first); }),
      "}");
}

absl::StatusOr<Json> ParseJson(const std::string& path, const std::string& text) {
  try {
    return Json::parse(text);
  } catch (const Json::out_of_range& e) {  // a number beyond double's range: 1e999
    return FileError(path, "a number", WithoutJsonExceptionPrefix(e.what()));
  } catch (const Json::parse_error& e) {
    std::string what = e.what();
    // nlohmann prefixes "[json.exception.parse_error.101] parse error at line 1, column 5: ".
    size_t colon = what.find(": ");
    if (colon != std::string::npos) what = what.substr(colon + 2);
    std::string where = e.byte >= text.size()
                            ? absl::StrCat("truncated at ", Position(text, e.byte))
                            : Position(text, e.byte);
    return FileError(path, where, what);
  }
}

absl::StatusOr<Configuration> ConfigFrom(const Json& j) { return ParseParamMapJson(j.dump()); }

// A Kernel Tuner cache as Kernel Tuner's read_cache closes one left open: it appends entries while
// it tunes ("key": {...}, each followed by a comma) and writes the closing braces at the end, so a
// run interrupted (a crash, Ctrl-C, a killed job) leaves a file that ends after an entry, which
// Kernel Tuner reads back. Nothing when the text ends closed already (its error is real).
std::optional<std::string> ClosedKernelTunerCache(absl::string_view text) {
  text = absl::StripTrailingAsciiWhitespace(text);
  if (text.empty() || absl::EndsWith(text, "}\n}") || absl::EndsWith(text, "}}}")) {
    return std::nullopt;
  }
  if (absl::EndsWith(text, ",")) text.remove_suffix(1);
  return absl::StrCat(text, "}\n}");
}

struct NameParts {
  std::string kernel, device;
};

NameParts PartsFromFileName(const std::string& path) {
  static const std::regex kPattern(R"(^([^_]+)_(.+)_(T4|kernel_tuner_cache)\.json(\.gz)?$)");
  std::smatch m;
  std::string name = BaseName(path);
  if (std::regex_match(name, m, kPattern)) return {m[1], m[2]};
  return {};
}

absl::StatusOr<double> TimeUnitToMs(const std::string& unit) {
  // "miliseconds" is how the shared T4 files spell it.
  if (unit.empty() || unit == "milliseconds" || unit == "miliseconds" || unit == "ms") return 1.0;
  if (unit == "seconds" || unit == "s") return 1000.0;
  if (unit == "microseconds" || unit == "us") return 1e-3;
  if (unit == "nanoseconds" || unit == "ns") return 1e-6;
  return absl::InvalidArgumentError(absl::StrCat("unknown time unit '", unit, "'"));
}

absl::StatusOr<MeasurementStatus> StatusFromT4Invalidity(const std::string& s) {
  if (s == "correct") return MeasurementStatus::kOk;
  if (s == "compile") return MeasurementStatus::kCompileError;
  if (s == "runtime") return MeasurementStatus::kRuntimeError;
  if (s == "timeout") return MeasurementStatus::kTimeout;
  if (s == "correctness") return MeasurementStatus::kWrongResult;
  if (s == "constraints") return MeasurementStatus::kInvalidConfig;
  return absl::InvalidArgumentError(absl::StrCat("unknown invalidity '", s, "'"));
}

const char* T4Invalidity(MeasurementStatus s) {
  switch (s) {
    case MeasurementStatus::kOk:
      return "correct";
    case MeasurementStatus::kCompileError:
      return "compile";
    case MeasurementStatus::kTimeout:
      return "timeout";
    case MeasurementStatus::kWrongResult:
    case MeasurementStatus::kTooInaccurate:  // T4 has no accuracy budget: its nearest failure
      return "correctness";
    case MeasurementStatus::kInvalidConfig:
      return "constraints";
    default:
      return "runtime";
  }
}

MeasurementStatus StatusFromKernelTunerString(const std::string& s) {
  if (s == "CompilationFailedConfig") return MeasurementStatus::kCompileError;
  if (s == "InvalidConfig") return MeasurementStatus::kInvalidConfig;
  return MeasurementStatus::kRuntimeError;  // RuntimeFailedConfig and anything else
}

Record Skeleton(const ReadOptions& o, const std::string& kernel, const std::string& device,
                const std::string& path) {
  Record r;
  r.kernel = kernel;
  r.problem = o.problem;
  r.device = DeviceInfo::FromName(device);
  r.source = absl::StrCat("import:", BaseName(path));
  return r;
}

absl::Status ResolveNames(const std::string& path, const ReadOptions& o, const Json& doc,
                          std::string* kernel, std::string* device) {
  NameParts parts = PartsFromFileName(path);
  // ktune's own names, which its Kernel Tuner exports keep beside Kernel Tuner's, and its T4
  // exports in their metadata (KtuneBlock): they win over the file's name (gemm_lowp_A100_T4.json
  // read as kernel gemm on class lowp_A100), and --kernel and --device over both.
  const Json* block = doc.contains("ktune") && doc["ktune"].is_object() ? &doc["ktune"] : nullptr;
  if (block == nullptr && doc.contains("metadata") && doc["metadata"].is_object() &&
      doc["metadata"].contains("ktune") && doc["metadata"]["ktune"].is_object()) {
    block = &doc["metadata"]["ktune"];
  }
  if (block != nullptr) {
    if (block->contains("kernel") && (*block)["kernel"].is_string()) {
      parts.kernel = (*block)["kernel"].get<std::string>();
    }
    const Json* d = block->contains("device") ? &(*block)["device"] : nullptr;
    if (d != nullptr && d->is_object() && d->contains("class") && (*d)["class"].is_string()) {
      parts.device = (*d)["class"].get<std::string>();
    }
  }
  *kernel = !o.kernel.empty() ? o.kernel : parts.kernel;
  *device = !o.device.empty() ? o.device : parts.device;
  // Kernel Tuner's top-level names, or those ktune's T4 export writes into the metadata.
  for (const Json* names : {&doc, doc.contains("metadata") ? &doc["metadata"] : nullptr}) {
    if (names == nullptr || !names->is_object()) continue;
    if (kernel->empty() && names->contains("kernel_name") && (*names)["kernel_name"].is_string()) {
      *kernel = (*names)["kernel_name"].get<std::string>();
    }
    if (device->empty() && names->contains("device_name") && (*names)["device_name"].is_string()) {
      *device = (*names)["device_name"].get<std::string>();
    }
  }
  if (kernel->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path,
                     ": the file does not name its kernel (name the file KERNEL_DEVICE_T4.json "
                     "or KERNEL_DEVICE_kernel_tuner_cache.json, or import it with db import "
                     "--kernel NAME)"));
  }
  if (device->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path,
                     ": the file does not name its device (name the file KERNEL_DEVICE_T4.json "
                     "or KERNEL_DEVICE_kernel_tuner_cache.json, or import it with db import "
                     "--device NAME)"));
  }
  return absl::OkStatus();
}

// Appends the repeat times in `times` (scaled to ms) to r.repeat_times_ms.
absl::Status ReadRepeats(const Json& times, double scale, const std::string& path,
                         const std::string& where, Record& r) {
  if (!times.is_array()) return FileError(path, where, "not an array");
  for (const Json& t : times) {
    if (!t.is_number()) return FileError(path, where, "holds a non-number");
    r.repeat_times_ms.push_back(t.get<double>() * scale);
  }
  return absl::OkStatus();
}

// Repeat statistics and the entry's timestamp, shared by both file formats.
absl::Status FinishRecord(const Json& e, const std::string& path, const std::string& where,
                          Record& r) {
  FillRepeatStatistics(r);
  // An empty timestamp (as some of the Benchmark Hub's T4 files have) means "not recorded".
  if (e.contains("timestamp") && e["timestamp"].is_string() &&
      !absl::StripAsciiWhitespace(e["timestamp"].get<std::string>()).empty()) {
    auto ts = ParseTimestampUs(e["timestamp"].get<std::string>());
    if (!ts.ok()) return FileError(path, where + ".timestamp", ts.status().message());
    r.measured_at_us = *ts;
  }
  return absl::OkStatus();
}

// ktune's names of a file's task, in its "ktune" object: a Kernel Tuner cache's (ExportKernelTuner
// and the Python bridge's export write it; Kernel Tuner ignores it), a T4 file's metadata's
// (ExportT4 writes it).
struct KtuneBlock {
  std::string kernel, kernel_version, device_class, family, fingerprint_json;
  std::optional<Problem> problem;
};
absl::StatusOr<std::optional<KtuneBlock>> ReadKtuneBlock(const std::string& path, const Json& doc,
                                                         const std::string& where);
void ApplyKtuneBlock(const std::optional<KtuneBlock>& block, const ReadOptions& o, Record& r);

absl::StatusOr<std::vector<Record>> ReadT4(const std::string& path, const Json& doc,
                                           const ReadOptions& options) {
  std::string kernel, device;
  KTUNE_RETURN_IF_ERROR(ResolveNames(path, options, doc, &kernel, &device));
  ReadOptions o = options;
  // The problem ktune's export writes into the metadata, unless the caller gives one.
  if (o.problem.empty() && doc.contains("metadata") && doc["metadata"].is_object() &&
      doc["metadata"].contains("problem")) {
    absl::StatusOr<Problem> problem = ParseParamMapJson(doc["metadata"]["problem"].dump());
    if (!problem.ok()) return FileError(path, "metadata.problem", problem.status().message());
    o.problem = *std::move(problem);
  }
  double scale = 1.0;
  if (doc.contains("metadata") && doc["metadata"].is_object()) {
    auto unit_name = StringField(doc["metadata"], "timeunit", "");
    if (!unit_name.ok()) return FileError(path, "metadata", unit_name.status().message());
    auto unit = TimeUnitToMs(*unit_name);
    if (!unit.ok()) return FileError(path, "metadata.timeunit", unit.status().message());
    scale = *unit;
  }
  if (!doc.contains("results") || !doc["results"].is_array()) {
    return FileError(path, "top level", "no \"results\" array: not a T4 file");
  }
  // ktune's names of the task (its kernel version, the device's family and fingerprint), which
  // ktune's T4 export writes into the metadata: without them its records came back as another
  // task's (another kernel version, a device named only by its class).
  std::optional<KtuneBlock> block;
  if (doc.contains("metadata") && doc["metadata"].is_object()) {
    KTUNE_ASSIGN_OR_RETURN(block, ReadKtuneBlock(path, doc["metadata"], "metadata.ktune"));
  }
  std::vector<Record> out;
  out.reserve(doc["results"].size());
  size_t index = 0;
  for (const Json& e : doc["results"]) {
    std::string where = absl::StrCat("results[", index++, "]");
    if (!e.is_object()) return FileError(path, where, "not an object");
    Record r = Skeleton(o, kernel, device, path);
    ApplyKtuneBlock(block, o, r);
    if (!e.contains("configuration")) return FileError(path, where, "no configuration");
    auto config = ConfigFrom(e["configuration"]);
    if (!config.ok()) return FileError(path, where + ".configuration", config.status().message());
    r.config = *std::move(config);
    auto invalidity_field = StringField(e, "invalidity", "correct");
    if (!invalidity_field.ok()) return FileError(path, where, invalidity_field.status().message());
    const std::string invalidity = *invalidity_field;
    auto status = StatusFromT4Invalidity(invalidity);
    if (!status.ok()) return FileError(path, where + ".invalidity", status.status().message());
    r.status = *status;
    const Json* time = nullptr;
    double time_scale = scale;  // the measurement's own "unit" wins over metadata.timeunit
    if (e.contains("measurements") && e["measurements"].is_array()) {
      for (const Json& m : e["measurements"]) {
        if (!m.is_object() || !m.contains("name") || m["name"] != "time" || !m.contains("value")) {
          continue;
        }
        time = &m["value"];
        time_scale = scale;
        if (m.contains("unit") && m["unit"].is_string() && !m["unit"].get<std::string>().empty()) {
          auto unit = TimeUnitToMs(m["unit"].get<std::string>());
          if (!unit.ok()) return FileError(path, where + ".measurements", unit.status().message());
          time_scale = *unit;
        }
      }
    }
    if (r.status == MeasurementStatus::kOk) {
      if (time == nullptr || !time->is_number()) {
        return FileError(path, where, "a correct result without a numeric \"time\" measurement");
      }
      double ms = time->get<double>() * time_scale;
      if (!(ms > 0) || std::isinf(ms)) {
        return FileError(path, where, "a correct result's time is not a positive number");
      }
      r.time_ms = ms;
    } else {
      r.message = time != nullptr && time->is_string()
                      ? absl::StrCat(time->get<std::string>(), " (recorded)")
                      : absl::StrCat("invalidity '", invalidity, "' (recorded)");
    }
    if (e.contains("times") && e["times"].is_object() && e["times"].contains("runtimes")) {
      KTUNE_RETURN_IF_ERROR(
          ReadRepeats(e["times"]["runtimes"], scale, path, where + ".times.runtimes", r));
    }
    KTUNE_RETURN_IF_ERROR(FinishRecord(e, path, where, r));
    out.push_back(std::move(r));
  }
  return out;
}

// `doc`'s "ktune" object (a Kernel Tuner cache's top level, a T4 file's metadata), named in
// messages as `where`.
absl::StatusOr<std::optional<KtuneBlock>> ReadKtuneBlock(const std::string& path, const Json& doc,
                                                         const std::string& where) {
  if (!doc.contains("ktune")) return std::nullopt;
  const Json& b = doc["ktune"];
  if (!b.is_object()) return FileError(path, where, "not an object");
  KtuneBlock out;
  if (b.contains("kernel") && b["kernel"].is_string()) out.kernel = b["kernel"].get<std::string>();
  if (b.contains("kernel_version") && b["kernel_version"].is_string()) {
    out.kernel_version = b["kernel_version"].get<std::string>();
  }
  if (b.contains("problem")) {
    if (!b["problem"].is_object()) return FileError(path, where + ".problem", "not an object");
    absl::StatusOr<ParamMap> problem = ParseParamMapJson(b["problem"].dump());
    if (!problem.ok()) return FileError(path, where + ".problem", problem.status().message());
    out.problem = *std::move(problem);
  }
  if (b.contains("device")) {
    const Json& d = b["device"];
    if (!d.is_object()) return FileError(path, where + ".device", "not an object");
    if (d.contains("family") && d["family"].is_string())
      out.family = d["family"].get<std::string>();
    if (d.contains("class") && d["class"].is_string()) {
      out.device_class = d["class"].get<std::string>();
    }
    if (d.contains("fingerprint")) {
      if (!d["fingerprint"].is_object()) {
        return FileError(path, where + ".device.fingerprint", "not an object");
      }
      out.fingerprint_json = d["fingerprint"].dump();
    }
  }
  return out;
}

// A record read from a file with ktune's names of its task, unless the caller gave its own.
// Its kernel's version only for that kernel, its device's family and fingerprint only for that
// device class: a T4 file's name may give others (pnpoly_copy_T4.json: class copy). ktune's
// export of records of several devices of the class names no fingerprint: the records know only
// their class (DeviceInfo::FromName), which an import matches against any device of it (a
// Kernel Tuner export named the first device, and the round trip stored every record again).
void ApplyKtuneBlock(const std::optional<KtuneBlock>& block, const ReadOptions& o, Record& r) {
  if (!block) return;
  if (o.kernel.empty() && r.kernel == block->kernel) r.kernel_version = block->kernel_version;
  if (o.device.empty() && r.device.device_class == block->device_class) {
    if (!block->family.empty()) r.device.family = block->family;  // none: the class's, inferred
    r.device.fingerprint_json = block->fingerprint_json.empty()
                                    ? DeviceInfo::FromName(block->device_class).fingerprint_json
                                    : block->fingerprint_json;
  }
  if (o.problem.empty() && block->problem) r.problem = *block->problem;
}

absl::StatusOr<std::vector<Record>> ReadKernelTuner(const std::string& path, const Json& doc,
                                                    const ReadOptions& o) {
  std::string kernel, device;
  KTUNE_RETURN_IF_ERROR(ResolveNames(path, o, doc, &kernel, &device));
  if (!doc.contains("cache") || !doc["cache"].is_object()) {
    return FileError(path, "top level", "no \"cache\" object: not a Kernel Tuner cache file");
  }
  if (!doc.contains("tune_params_keys") || !doc["tune_params_keys"].is_array()) {
    return FileError(path, "top level", "no \"tune_params_keys\" list");
  }
  std::vector<std::string> keys;
  for (const Json& k : doc["tune_params_keys"]) {
    if (!k.is_string()) return FileError(path, "tune_params_keys", "holds a non-string");
    keys.push_back(k.get<std::string>());
  }
  std::string fingerprint_name = doc.contains("device_name") && doc["device_name"].is_string()
                                     ? doc["device_name"].get<std::string>()
                                     : "";
  // The task as ktune filed it, where its own export wrote it: Kernel Tuner's names and its
  // problem_size list (values without names) cannot say it, and the records landed elsewhere.
  KTUNE_ASSIGN_OR_RETURN(std::optional<KtuneBlock> block, ReadKtuneBlock(path, doc, "ktune"));
  std::vector<Record> out;
  out.reserve(doc["cache"].size());
  for (auto it = doc["cache"].begin(); it != doc["cache"].end(); ++it) {
    std::string where = absl::StrCat("cache[\"", it.key(), "\"]");
    const Json& e = it.value();
    if (!e.is_object()) return FileError(path, where, "not an object");
    Record r = Skeleton(o, kernel, device, path);
    if (!fingerprint_name.empty()) {
      r.device.fingerprint_json = Json({{"name", fingerprint_name}}).dump();
    }
    ApplyKtuneBlock(block, o, r);
    for (const std::string& k : keys) {
      if (!e.contains(k)) return FileError(path, where, absl::StrCat("no value for parameter ", k));
      const Json& v = e[k];
      if (v.is_number_unsigned() && v.get<uint64_t>() > INT64_MAX) {
        return FileError(
            path, where,
            absl::StrCat("parameter ", k, ": ", v.dump(), " is above the largest 64-bit integer"));
      } else if (v.is_number_integer())
        r.config[k] = v.get<int64_t>();
      else if (v.is_number())
        r.config[k] = v.get<double>();
      else if (v.is_string())
        r.config[k] = v.get<std::string>();
      else
        return FileError(path, where, absl::StrCat("parameter ", k, " is not a number or string"));
    }
    if (!e.contains("time")) return FileError(path, where, "no \"time\"");
    const Json& t = e["time"];
    if (t.is_string()) {
      r.status = StatusFromKernelTunerString(t.get<std::string>());
      r.message = absl::StrCat(t.get<std::string>(), " (recorded)");
    } else if (t.is_number()) {
      double ms = t.get<double>();
      if (ms >= 1e20) {  // Kernel Tuner's failure sentinel
        r.status = MeasurementStatus::kRuntimeError;
        r.message = "recorded with Kernel Tuner's failure time 1e20";
      } else if (!(ms > 0)) {
        return FileError(path, where, "a time that is not a positive number");
      } else {
        r.time_ms = ms;
      }
    } else {
      return FileError(path, where, "\"time\" is neither a number nor a failure string");
    }
    if (e.contains("times")) {
      KTUNE_RETURN_IF_ERROR(ReadRepeats(e["times"], 1.0, path, where + ".times", r));
    }
    KTUNE_RETURN_IF_ERROR(FinishRecord(e, path, where, r));
    out.push_back(std::move(r));
  }
  return out;
}

absl::StatusOr<std::vector<Record>> ReadJsonl(const std::string& path, const std::string& text,
                                              std::vector<std::pair<TaskKey, int64_t>>* stale,
                                              std::vector<std::string>* kernel_specs) {
  std::vector<Record> out;
  StaleBoundaryCollector latest;
  size_t line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    if (absl::StartsWith(absl::StripLeadingAsciiWhitespace(line), kKernelSpecLinePrefix)) {
      const Json j = Json::parse(line.begin(), line.end(), nullptr, false);
      if (j.is_discarded() || !j.is_object() || !j.contains(kKernelSpecKey) ||
          !j[kKernelSpecKey].is_object()) {
        return FileError(path, absl::StrCat("line ", line_no),
                         absl::StrCat("\"", kKernelSpecKey, "\" is not a kernel spec object"));
      }
      kernel_specs->push_back(j[kKernelSpecKey].dump());
      continue;
    }
    std::optional<int64_t> stale_before_us;
    auto r = RecordFromJsonLine(line, &stale_before_us);
    if (!r.ok()) return FileError(path, absl::StrCat("line ", line_no), r.status().message());
    if (stale_before_us) latest.Add(*r, *stale_before_us);
    out.push_back(*std::move(r));
  }
  *stale = latest.Tasks();
  return out;
}

RecordFileFormat DetectFormat(const std::string& text) {
  size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return RecordFileFormat::kJsonl;
  size_t newline = text.find('\n', first);
  absl::string_view head =
      absl::string_view(text).substr(first, std::min<size_t>(text.size() - first, 4096));
  // A JSONL file starts with a JSON object on its first line: a whole record, or a broken one,
  // whose error (naming the line and the field) is more use than a Kernel Tuner reader's. A
  // one-line T4 or Kernel Tuner file is an object too, but with their top-level keys.
  if (newline != std::string::npos) {
    const absl::string_view first_line = absl::string_view(text).substr(first, newline - first);
    if (RecordFromJsonLine(first_line).ok()) return RecordFileFormat::kJsonl;
    const Json j = Json::parse(first_line.begin(), first_line.end(), nullptr, false);
    if (j.is_object() && !j.contains("results") && !j.contains("cache") &&
        !j.contains("schema_version") && !j.contains("metadata") &&
        !j.contains("tune_params_keys")) {
      return RecordFileFormat::kJsonl;
    }
  }
  if (absl::StrContains(head, "\"results\"") || absl::StrContains(head, "\"schema_version\"") ||
      absl::StrContains(head, "\"metadata\"")) {
    return RecordFileFormat::kT4;
  }
  return RecordFileFormat::kKernelTuner;
}

}  // namespace

absl::string_view RecordFileFormatName(RecordFileFormat f) {
  switch (f) {
    case RecordFileFormat::kT4:
      return "t4";
    case RecordFileFormat::kKernelTuner:
      return "kernel-tuner";
    case RecordFileFormat::kJsonl:
      return "jsonl";
    case RecordFileFormat::kAuto:
      return "auto";
  }
  return "auto";
}

absl::StatusOr<RecordFileFormat> ParseRecordFileFormat(absl::string_view name) {
  if (name == "t4") return RecordFileFormat::kT4;
  if (name == "kernel-tuner" || name == "kernel_tuner") return RecordFileFormat::kKernelTuner;
  if (name == "jsonl") return RecordFileFormat::kJsonl;
  if (name == "auto" || name.empty()) return RecordFileFormat::kAuto;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown format '", name, "' (expected t4, kernel-tuner or jsonl)"));
}

absl::StatusOr<RecordFile> ReadRecordFile(const std::string& path, const ReadOptions& options) {
  KTUNE_ASSIGN_OR_RETURN(std::string text, ReadFileMaybeGzip(path));
  RecordFile file;
  file.format = options.format == RecordFileFormat::kAuto ? DetectFormat(text) : options.format;
  if (file.format == RecordFileFormat::kJsonl) {
    // Each line names its own task: a kernel, device or problem given for the file was ignored
    // without a word (db import exp.jsonl --kernel gemm kept every record's own kernel).
    if (!options.kernel.empty() || !options.device.empty() || !options.problem.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          path,
          ": a JSONL file's records name their own kernel, device and problem; --kernel, "
          "--device and --problem are for T4 and Kernel Tuner files"));
    }
    KTUNE_ASSIGN_OR_RETURN(file.records, ReadJsonl(path, text, &file.stale, &file.kernel_specs));
    return file;
  }
  absl::StatusOr<Json> parsed = ParseJson(path, text);
  if (!parsed.ok() && file.format == RecordFileFormat::kKernelTuner) {
    if (std::optional<std::string> closed = ClosedKernelTunerCache(text)) {
      Json j = Json::parse(*closed, nullptr, false);
      if (!j.is_discarded()) {
        parsed = std::move(j);
        file.left_open = true;
      }
    }
  }
  if (!parsed.ok() && (absl::StrContains(text, "NaN") || absl::StrContains(text, "Infinity"))) {
    // Python's json.dump writes them; JSON has no such numbers (a cache with a time of Infinity
    // was refused with nlohmann's "invalid literal" alone).
    return absl::Status(parsed.status().code(),
                        absl::StrCat(parsed.status().message(),
                                     " (NaN and Infinity are not JSON numbers: write a failure "
                                     "as Kernel Tuner does, or leave the entry out)"));
  }
  KTUNE_ASSIGN_OR_RETURN(Json doc, std::move(parsed));
  if (!doc.is_object()) return FileError(path, "top level", "not a JSON object");
  // Detected from the first 4 KiB: a T4 file whose "results" come after a large "environment"
  // read as a Kernel Tuner cache ('no "cache" object'). The whole document decides.
  if (options.format == RecordFileFormat::kAuto) {
    const bool t4 = doc.contains("results") && doc["results"].is_array();
    const bool cache = doc.contains("cache") && doc["cache"].is_object();
    if (t4 && !cache) file.format = RecordFileFormat::kT4;
    if (cache && !t4) file.format = RecordFileFormat::kKernelTuner;
  }
  // The readers check each field's type; this is the net under them: a field of a type they do
  // not check makes nlohmann throw, and that must be an error naming the file, never an abort.
  try {
    if (file.format == RecordFileFormat::kT4) {
      KTUNE_ASSIGN_OR_RETURN(file.records, ReadT4(path, doc, options));
    } else {
      KTUNE_ASSIGN_OR_RETURN(file.records, ReadKernelTuner(path, doc, options));
      const bool block_problem =
          doc.contains("ktune") && doc["ktune"].is_object() && doc["ktune"].contains("problem");
      if (options.problem.empty() && !block_problem && doc.contains("problem_size") &&
          !doc["problem_size"].empty()) {
        file.problem_size_not_kept = doc["problem_size"].dump();
      }
    }
  } catch (const Json::exception& e) {
    return FileError(path, "a field of the wrong type", WithoutJsonExceptionPrefix(e.what()));
  }
  // A T4 or Kernel Tuner file is one space: every configuration sets the same parameters.
  const auto same_name = [](const auto& a, const auto& b) { return a.first == b.first; };
  for (size_t i = 0; i < file.records.size(); ++i) {
    const Configuration& c = file.records[i].config;
    const Configuration& first = file.records.front().config;
    if (c.empty()) {
      return FileError(path, absl::StrCat("entry ", i), "a configuration without parameters");
    }
    if (!std::equal(c.begin(), c.end(), first.begin(), first.end(), same_name)) {
      return FileError(path, absl::StrCat("entry ", i),
                       absl::StrCat("sets the parameters ", KeyList(c), ", the first entry ",
                                    KeyList(first), ": a file holds one space"));
    }
  }
  return file;
}

absl::StatusOr<RecordedSpace> LoadRecordedSpace(const std::string& path,
                                                const ReadOptions& options) {
  KTUNE_ASSIGN_OR_RETURN(RecordFile file, ReadRecordFile(path, options));
  // One record a configuration, in the order of their first entries: the fastest ok one, or the
  // first failure. (A file listing a configuration twice had its optimum from the faster entry
  // and was replayed with the later, slower or failed one: no search could reach the optimum.)
  std::vector<Record> records;
  int64_t duplicates_merged = 0;
  absl::flat_hash_map<std::string, size_t> index_of;
  bool any_ok = false;
  for (Record& r : file.records) {
    any_ok = any_ok || r.status == MeasurementStatus::kOk;
    auto [it, added] = index_of.try_emplace(CanonicalJson(r.config), records.size());
    if (added) {
      records.push_back(std::move(r));
      continue;
    }
    ++duplicates_merged;
    Record& kept = records[it->second];
    const bool faster = r.status == MeasurementStatus::kOk &&
                        (kept.status != MeasurementStatus::kOk || *r.time_ms < *kept.time_ms);
    if (faster) kept = std::move(r);
  }
  if (!any_ok) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": none of its ", records.size(),
                     " configurations ran ok: a recorded space needs an optimum to replay"));
  }
  std::vector<Configuration> configs;
  configs.reserve(records.size());
  for (const Record& r : records) configs.push_back(r.config);
  auto space = SearchSpace::FromConfigurations(configs);
  if (!space.ok()) {
    return absl::Status(space.status().code(), absl::StrCat(path, ": ", space.status().message()));
  }
  return RecordedSpace{*std::move(space), std::move(records), duplicates_merged};
}

std::string RecordedSpaceLanguage(const std::string& kernel, const Problem& problem) {
  // 23 bytes: a worker's language names are at most 32 (the kernel and problem in full made a
  // replay worker of any file with a problem unable to register).
  return absl::StrCat(
      "replay:", StableHashHex(absl::StrCat(kernel, "\n", CanonicalJson(problem))).substr(0, 16));
}

absl::StatusOr<ImportSummary> ImportRecordFile(
    TuningDatabase& db, const std::string& path, const ReadOptions& options,
    const KernelRegistry* registry,
    const std::function<absl::Status(const std::string&)>& register_kernel) {
  KTUNE_ASSIGN_OR_RETURN(RecordFile file, ReadRecordFile(path, options));
  ImportSummary summary;
  for (const std::string& spec : file.kernel_specs) {
    if (!register_kernel) continue;
    if (absl::Status s = register_kernel(spec); !s.ok()) {
      return absl::Status(s.code(),
                          absl::StrCat(path, ": nothing imported: its kernel spec: ", s.message()));
    }
    ++summary.kernels_registered;
  }
  summary.format = file.format;
  summary.records_read = static_cast<int64_t>(file.records.size());
  summary.problem_size_not_kept = file.problem_size_not_kept;
  summary.left_open = file.left_open;
  // JSONL records carry their identity, yet the same measurements imported into two databases
  // under two file names have two (source "import:FILE"): compared by measurement too, a merge
  // of the two stores them once.
  auto added = AddImportedRecords(db, std::move(file.records), registry, /*by_measurement=*/true);
  if (!added.ok()) {
    return absl::Status(added.status().code(),
                        absl::StrCat(path, ": nothing imported: ", added.status().message()));
  }
  summary.records_added = *added;
  for (auto& [task, before_us] : file.stale) {
    if (registry != nullptr) {  // the task as its records were fitted
      if (auto fitted = RegistryProblem(*registry, task.kernel, task.problem)) {
        task.problem = *std::move(fitted);
      }
    }
    if (absl::Status s = db.MarkStale(task, before_us); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat(path, ": the records were imported, but not the ",
                                                 "stale boundary of ", task.kernel, " on ",
                                                 task.device_class, ": ", s.message()));
    }
  }
  summary.stale_tasks = static_cast<int64_t>(file.stale.size());
  return summary;
}

absl::StatusOr<int64_t> ExportJsonl(TuningDatabase& db, std::ostream& out,
                                    const std::function<bool(const Record&)>& keep) {
  // Records a regression retired (MarkStale) carry their task's boundary, as an import reads it.
  KTUNE_ASSIGN_OR_RETURN(const StaleBoundaryIndex stale, StaleBoundaryIndex::Of(db));
  int64_t n = 0;
  KTUNE_RETURN_IF_ERROR(db.ForEachRecord([&](const Record& r) {
    if (keep && !keep(r)) return absl::OkStatus();
    out << RecordToJsonLine(r, stale.For(r)) << '\n';
    ++n;
    return out ? absl::OkStatus() : absl::UnavailableError("write failed");
  }));
  return n;
}

// T4 and Kernel Tuner files have no place for a record's client payload (a TVM schedule): such an
// export would import back as records a client can no longer use (TVM got nothing, while `best`
// still showed them). FailedPrecondition naming the remedy.
static absl::Status RefusePayloads(const std::vector<Record>& records, const char* format) {
  const int64_t carrying = std::count_if(records.begin(), records.end(),
                                         [](const Record& r) { return !r.payload.empty(); });
  if (carrying == 0) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      carrying, " of the task's ", records.size(), " records carry a client's payload (such as a ",
      "TVM schedule) that a ", format, " file cannot hold; export --format jsonl to keep it"));
}

// ktune's names of a task, which neither T4 nor Kernel Tuner's names can carry (ReadKtuneBlock
// reads them back): the kernel's version, the problem, and the device's family and fingerprint
// when every record has the same (the file holds one device; records of several machines would
// all come back as the first's).
Json KtuneBlockJson(const TaskKey& task, const std::vector<Record>& records) {
  Json device = {{"class", task.device_class}};
  const auto all_share = [&records](auto field) {
    return !records.empty() && std::all_of(records.begin(), records.end(), [&](const Record& r) {
      return field(r) == field(records.front());
    });
  };
  if (all_share([](const Record& r) { return r.device.family; })) {
    device["family"] = records.front().device.family;
  }
  if (all_share([](const Record& r) { return r.device.fingerprint_json; })) {
    const Json fingerprint = Json::parse(records.front().device.fingerprint_json, nullptr, false);
    if (fingerprint.is_object()) device["fingerprint"] = fingerprint;
  }
  return {{"kernel", task.kernel},
          {"kernel_version", task.kernel_version},
          {"problem", Json::parse(CanonicalJson(task.problem))},
          {"device", std::move(device)}};
}

absl::StatusOr<int64_t> ExportT4(TuningDatabase& db, const TaskKey& task, std::ostream& out) {
  KTUNE_ASSIGN_OR_RETURN(std::vector<Record> records, db.TaskRecords(task));
  KTUNE_RETURN_IF_ERROR(RefusePayloads(records, "T4"));
  Json results = Json::array();
  for (const Record& r : records) {
    Json e;
    if (r.measured_at_us) {
      e["timestamp"] = absl::FormatTime(
          "%Y-%m-%d %H:%M:%E6S%Ez", absl::FromUnixMicros(*r.measured_at_us), absl::UTCTimeZone());
    }
    Json config = Json::object();
    for (const auto& [k, v] : r.config) std::visit([&](const auto& x) { config[k] = x; }, v);
    e["configuration"] = config;
    e["times"] = {{"runtimes", r.repeat_times_ms}};
    e["invalidity"] = T4Invalidity(r.status);
    e["correctness"] = r.status == MeasurementStatus::kOk ? 1 : 0;
    Json value;
    if (r.time_ms) {
      value = *r.time_ms;
    } else if (r.status == MeasurementStatus::kCompileError) {
      value = "CompilationFailedConfig";
    } else if (r.status == MeasurementStatus::kInvalidConfig) {
      value = "InvalidConfig";
    } else {
      value = "RuntimeFailedConfig";
    }
    e["measurements"] =
        Json::array({{{"name", "time"}, {"value", value}, {"unit", "milliseconds"}}});
    e["objectives"] = Json::array({"time"});
    results.push_back(std::move(e));
  }
  // The kernel, device and problem in the metadata (names T4 leaves to the file name), so that
  // the file imports back as it was under any name.
  Json metadata = {{"timeunit", "milliseconds"},
                   {"kernel_name", task.kernel},
                   {"device_name", task.device_class}};
  if (!task.problem.empty()) metadata["problem"] = Json::parse(CanonicalJson(task.problem));
  if (!records.empty()) metadata["ktune"] = KtuneBlockJson(task, records);
  Json doc = {{"schema_version", "1.0.0"},
              {"metadata", std::move(metadata)},
              {"results", std::move(results)}};
  out << doc.dump(1) << '\n';
  if (!out) return absl::UnavailableError("write failed");
  return static_cast<int64_t>(records.size());
}

absl::StatusOr<int64_t> ExportKernelTuner(TuningDatabase& db, const TaskKey& task,
                                          std::ostream& out) {
  KTUNE_ASSIGN_OR_RETURN(std::vector<Record> records, db.TaskRecords(task));
  if (records.empty()) return absl::NotFoundError("the task has no records to export");
  KTUNE_RETURN_IF_ERROR(RefusePayloads(records, "Kernel Tuner"));
  auto json_of = [](const ParamValue& v) {
    return std::visit([](const auto& x) { return Json(x); }, v);
  };
  // Kernel Tuner's key: Python's str() of each value (strings raw, numbers as written).
  auto key_part = [](const ParamValue& v) {
    if (const std::string* s = std::get_if<std::string>(&v)) return *s;
    return std::visit([](const auto& x) { return Json(x).dump(); }, v);
  };
  std::vector<std::string> keys;
  for (const auto& [k, v] : records.front().config) keys.push_back(k);  // a map: sorted
  Json tune_params = Json::object();
  for (const std::string& k : keys) {
    std::vector<ParamValue> values;
    for (const Record& r : records) {
      auto it = r.config.find(k);
      if (it != r.config.end() &&
          std::find(values.begin(), values.end(), it->second) == values.end()) {
        values.push_back(it->second);
      }
    }
    std::sort(values.begin(), values.end());
    Json list = Json::array();
    for (const ParamValue& v : values) list.push_back(json_of(v));
    tune_params[k] = std::move(list);
  }
  Json problem_size = Json::array();
  for (const auto& [k, v] : task.problem) {
    if (k != "dtype") problem_size.push_back(json_of(v));
  }
  const Json fingerprint = Json::parse(records.front().device.fingerprint_json, nullptr, false);
  auto fact = [&](const char* name) {
    return fingerprint.is_object() && fingerprint.contains(name) && fingerprint[name].is_string()
               ? fingerprint[name].get<std::string>()
               : std::string();
  };
  // Kernel Tuner's name of the device, which it compares when it reuses a cache: its C and
  // Fortran back ends name none (a file naming the CPU model was refused: "results for different
  // device"); otherwise the fingerprint's name.
  const bool kernel_tuner_cpu =
      fact("kind") == "kernel_tuner" && (fact("lang") == "C" || fact("lang") == "FORTRAN");
  const std::string device_name = kernel_tuner_cpu        ? ""
                                  : !fact("name").empty() ? fact("name")
                                                          : task.device_class;
  // A cache holds one entry per configuration: of a configuration measured more than once, its
  // fastest ok record (what `best` serves), else its latest failure. (The last record read won,
  // and a failure could hide an ok measurement.)
  std::map<std::string, const Record*> kept;  // canonical configuration -> its record
  for (const Record& r : records) {
    const Record*& k = kept[CanonicalJson(r.config)];
    const bool ok = r.status == MeasurementStatus::kOk && r.time_ms;
    const bool kept_ok = k != nullptr && k->status == MeasurementStatus::kOk && k->time_ms;
    if (k == nullptr || (ok && (!kept_ok || *r.time_ms < *k->time_ms)) || (!ok && !kept_ok)) {
      k = &r;
    }
  }
  Json cache = Json::object();
  for (const Record& r : records) {
    if (kept.at(CanonicalJson(r.config)) != &r) continue;
    Json entry = Json::object();
    std::string key;
    for (const std::string& k : keys) {
      auto it = r.config.find(k);
      if (it == r.config.end()) continue;
      entry[k] = json_of(it->second);
      absl::StrAppend(&key, key.empty() ? "" : ",", key_part(it->second));
    }
    if (r.status == MeasurementStatus::kOk && r.time_ms) {
      entry["time"] = *r.time_ms;
      entry["times"] = r.repeat_times_ms;
    } else {
      const char* name = r.status == MeasurementStatus::kInvalidConfig ? "InvalidConfig"
                         : r.status == MeasurementStatus::kCompileError
                             ? "CompilationFailedConfig"
                             : "RuntimeFailedConfig";
      entry["time"] = name;
      entry["__error__"] = name;
    }
    if (r.measured_at_us) {
      entry["timestamp"] = absl::FormatTime("%Y-%m-%dT%H:%M:%E6S%Ez",
                                            absl::FromUnixMicros(*r.measured_at_us),
                                            absl::UTCTimeZone());
    }
    cache[key] = std::move(entry);
  }
  // In this key order, "cache" last: Kernel Tuner reads a file that ends with the cache object
  // (an open cache it may append to), and a sorted one failed there ("Extra data").
  nlohmann::ordered_json doc = {
      {"device_name", device_name},
      {"kernel_name", task.kernel},
      // ktune's names of the task, which Kernel Tuner's cannot carry: `db import` files
      // the records under this task again (Kernel Tuner ignores the key).
      {"ktune", KtuneBlockJson(task, records)},
      {"problem_size", std::move(problem_size)},
      {"tune_params_keys", keys},
      {"tune_params", tune_params},
      {"objective", "time"},
      {"cache", cache}};
  const int64_t entries = static_cast<int64_t>(doc["cache"].size());
  out << doc.dump(1) << '\n';
  if (!out) return absl::UnavailableError("write failed");
  return entries;
}

}  // namespace ktune
