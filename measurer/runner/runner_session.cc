#include "measurer/runner/runner_session.h"

#include <dlfcn.h>

#include <algorithm>
#include <cfloat>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <new>
#include <random>
#include <stdexcept>

#include "common/utf8.h"
#include "kernels/cpu/builtin_cpu_kernels.h"
#include "xxhash.h"

namespace ktune::runner {
namespace {

double NowMs() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

RunResponse Failure(RunResponse::Status status, std::string message, bool restart = false) {
  RunResponse r;
  r.set_status(status);
  r.set_message(Utf8Prefix(message, 4096));  // a proto3 string: valid UTF-8 only
  r.set_restart(restart);
  return r;
}

std::string FormatFloat(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.7g", v);
  return buf;
}

}  // namespace

RunnerSession::~RunnerSession() {
  buffers_.clear();
  for (auto& [path, handle] : libraries_) ::dlclose(handle);
}

RunResponse RunnerSession::Handle(const RunRequest& request) {
  const std::string key = request.kernel().SerializeAsString();
  double prepare_ms = 0;
  if (key != prepared_key_) {
    prepared_key_.clear();
    const double start = NowMs();
    std::string error;
    try {
      error = Prepare(request.kernel());
    } catch (const std::bad_alloc&) {
      error = "out of memory preparing the buffers and the reference";
    } catch (const std::exception& e) {
      error = std::string("preparing: ") + e.what();
    }
    if (!error.empty()) return Failure(RunResponse::RUNTIME_ERROR, error, true);
    prepared_key_ = key;
    prepare_ms = NowMs() - start;
  }
  RunResponse response;
  if (request.config_size() > 0) response = Measure(request);
  response.set_prepare_ms(prepare_ms);
  return response;
}

std::string RunnerSession::Prepare(const KernelSpec& spec) {
  spec_ = spec;
  buffers_.clear();
  buffer_ptrs_.clear();
  reference_outputs_.clear();
  reference_scale_.clear();
  reference_magnitude_.clear();
  if (spec.library_path().empty()) {
    const cpu::BuiltinCpuKernel* builtin = cpu::FindBuiltinCpuKernel(spec.name());
    if (builtin == nullptr) return "no built-in kernel named '" + spec.name() + "'";
    kernel_ = builtin->run;
    reference_ = builtin->reference;
  } else {
    void*& handle = libraries_[spec.library_path()];
    if (handle == nullptr) handle = ::dlopen(spec.library_path().c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      libraries_.erase(spec.library_path());
      return std::string("cannot load the kernel: ") + ::dlerror();
    }
    kernel_ = reinterpret_cast<ktune_cpu_kernel_fn>(::dlsym(handle, "ktune_kernel"));
    reference_ = reinterpret_cast<ktune_cpu_kernel_fn>(::dlsym(handle, "ktune_reference"));
    if (kernel_ == nullptr || reference_ == nullptr) {
      return "the kernel library does not export both ktune_kernel and ktune_reference "
             "(extern \"C\")";
    }
  }
  const int n = spec.buffer_elements_size();
  if (spec.num_outputs() < 1 || spec.num_outputs() > n) return "a kernel needs an output buffer";
  std::mt19937_64 rng(spec.seed());
  std::function<float()> draw;
  if (spec.distribution().empty() || spec.distribution() == "uniform") {
    draw = [&rng, d = std::uniform_real_distribution<float>(-1.f, 1.f)]() mutable { return d(rng); };
  } else if (spec.distribution() == "normal") {
    draw = [&rng, d = std::normal_distribution<float>(0.f, 1.f)]() mutable { return d(rng); };
  } else if (spec.distribution() == "heavy_tailed") {
    draw = [&rng, d = std::student_t_distribution<float>(3.f)]() mutable { return d(rng); };
  } else if (spec.distribution().rfind("file:", 0) == 0) {
    std::ifstream file(spec.distribution().substr(5), std::ios::binary);
    std::vector<float> values;
    for (float v; file.read(reinterpret_cast<char*>(&v), sizeof v);) values.push_back(v);
    if (values.empty()) return "cannot read the inputs file " + spec.distribution().substr(5);
    draw = [values = std::move(values), next = size_t{0}]() mutable {
      const float v = values[next];
      next = (next + 1) % values.size();
      return v;
    };
  } else {
    return "unknown input distribution '" + spec.distribution() + "'";
  }
  for (int b = 0; b < n; ++b) {
    auto buffer = std::make_unique<GuardedBuffer>(spec.buffer_elements(b));
    if (buffer->data() == nullptr) return "out of memory allocating the buffers";
    float* p = buffer->data();
    for (int64_t i = 0; i < buffer->size(); ++i) p[i] = draw();
    buffer_ptrs_.push_back(p);
    buffers_.push_back(std::move(buffer));
  }
  const int first_output = n - spec.num_outputs();
  uint64_t checksum = 0;
  for (int b = 0; b < first_output; ++b) {
    checksum ^= XXH3_64bits(buffer_ptrs_[b], buffers_[b]->size() * sizeof(float)) + b;
  }
  input_checksum_ = checksum;

  std::vector<int64_t> sizes(spec.buffer_elements().begin(), spec.buffer_elements().end());
  std::vector<int64_t> problem(spec.problem().begin(), spec.problem().end());
  ktune_cpu_call call{problem.data(),
                      static_cast<int32_t>(problem.size()),
                      nullptr,
                      0,
                      buffer_ptrs_.data(),
                      sizes.data(),
                      n};
  if (reference_(&call) != 0) return "the reference implementation refused the problem";
  for (int b = first_output; b < n; ++b) {
    const float* p = buffer_ptrs_[b];
    reference_outputs_.emplace_back(p, p + sizes[b]);
    double scale = 0;
    for (int64_t i = 0; i < sizes[b]; ++i) scale = std::max(scale, std::fabs(double{p[i]}));
    reference_scale_.push_back(scale);
  }
  return spec.componentwise_error() ? ComputeMagnitudes(call) : "";
}

std::string RunnerSession::ComputeMagnitudes(ktune_cpu_call call) {
  const int n = call.num_buffers;
  const int first_output = n - spec_.num_outputs();
  std::vector<std::vector<float>> copies(n);
  std::vector<float*> pointers(n);
  for (int b = 0; b < n; ++b) {
    copies[b].resize(call.buffer_elements[b]);
    if (b < first_output) {
      const float* in = buffer_ptrs_[b];
      for (size_t i = 0; i < copies[b].size(); ++i) copies[b][i] = std::fabs(in[i]);
    }
    pointers[b] = copies[b].data();
  }
  call.buffers = pointers.data();
  if (reference_(&call) != 0) {
    return "the reference implementation refused the inputs' absolute values (componentwise "
           "error)";
  }
  for (int b = first_output; b < n; ++b) reference_magnitude_.push_back(std::move(copies[b]));
  return "";
}

bool RunnerSession::RunOnce(const ktune_cpu_call& call, RunResponse& response) {
  int rc;
  try {
    rc = kernel_(&call);
  } catch (const std::bad_alloc&) {
    response = Failure(RunResponse::RUNTIME_ERROR, "out of memory (std::bad_alloc)", true);
    return false;
  } catch (const std::exception& e) {
    response = Failure(RunResponse::RUNTIME_ERROR, std::string("exception: ") + e.what(), true);
    return false;
  } catch (...) {
    response = Failure(RunResponse::RUNTIME_ERROR, "an exception of unknown type", true);
    return false;
  }
  if (rc != 0) {
    response =
        Failure(RunResponse::INVALID_CONFIG,
                "the kernel refused the configuration (returned " + std::to_string(rc) + ")");
    return false;
  }
  return true;
}

bool RunnerSession::MemoryIntact(RunResponse& response) {
  const int n = static_cast<int>(buffers_.size());
  for (int b = 0; b < n; ++b) {
    std::string where;
    if (!buffers_[b]->CanariesIntact(&where)) {
      response = Failure(
          RunResponse::RUNTIME_ERROR,
          "the kernel wrote outside its buffers: buffer " + std::to_string(b) + ", " + where, true);
      return false;
    }
  }
  uint64_t checksum = 0;
  for (int b = 0; b < n - spec_.num_outputs(); ++b) {
    checksum ^= XXH3_64bits(buffer_ptrs_[b], buffers_[b]->size() * sizeof(float)) + b;
  }
  if (checksum != input_checksum_) {
    response = Failure(RunResponse::RUNTIME_ERROR, "the kernel wrote into an input buffer", true);
    return false;
  }
  return true;
}

bool RunnerSession::OutputsMatch(RunResponse& response, double& max_rel_error) {
  const int first_output = static_cast<int>(buffers_.size()) - spec_.num_outputs();
  max_rel_error = 0;
  for (int o = 0; o < spec_.num_outputs(); ++o) {
    const float* out = buffer_ptrs_[first_output + o];
    const std::vector<float>& ref = reference_outputs_[o];
    const double tolerance = spec_.atol() + spec_.rtol() * reference_scale_[o];
    const double scale = reference_scale_[o] > 0 ? reference_scale_[o] : 1.0;
    const float* magnitude =
        reference_magnitude_.empty() ? nullptr : reference_magnitude_[o].data();
    int64_t bad = 0, first_bad = -1;
    double max_diff = 0, max_componentwise = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
      const double diff = std::fabs(double{out[i]} - double{ref[i]});
      max_diff = std::max(max_diff, diff);
      if (magnitude != nullptr) {
        // A zero magnitude means every term is zero: any difference there is an error.
        const double terms = std::max(double{magnitude[i]}, double{FLT_MIN});
        max_componentwise = std::max(max_componentwise, diff / terms);
      }
      if (!(diff <= tolerance)) {  // NaN fails too
        if (first_bad < 0) first_bad = static_cast<int64_t>(i);
        ++bad;
      }
    }
    if (bad > 0) {
      response = Failure(RunResponse::WRONG_RESULT,
                         "output " + std::to_string(o) + ": " + std::to_string(bad) + " of " +
                             std::to_string(ref.size()) + " elements differ from the reference; [" +
                             std::to_string(first_bad) + "] = " + FormatFloat(out[first_bad]) +
                             ", expected " + FormatFloat(ref[first_bad]) + " (tolerance " +
                             FormatFloat(tolerance) + ")");
      return false;
    }
    max_rel_error =
        std::max(max_rel_error, magnitude != nullptr ? max_componentwise : max_diff / scale);
  }
  return true;
}

RunResponse RunnerSession::Measure(const RunRequest& request) {
  RunResponse response;
  std::vector<int64_t> sizes(spec_.buffer_elements().begin(), spec_.buffer_elements().end());
  std::vector<int64_t> problem(spec_.problem().begin(), spec_.problem().end());
  std::vector<int64_t> config(request.config().begin(), request.config().end());
  const ktune_cpu_call call{problem.data(),
                            static_cast<int32_t>(problem.size()),
                            config.data(),
                            static_cast<int32_t>(config.size()),
                            buffer_ptrs_.data(),
                            sizes.data(),
                            static_cast<int32_t>(sizes.size())};
  // A built-in kernel's prepare and release bracket this configuration's runs (cpu_kernel_abi.h).
  const cpu::BuiltinCpuKernel* builtin =
      spec_.library_path().empty() ? cpu::FindBuiltinCpuKernel(spec_.name()) : nullptr;
  std::unique_ptr<const ktune_cpu_call, ktune_cpu_kernel_fn> release(
      builtin && builtin->release ? &call : nullptr, builtin ? builtin->release : nullptr);
  if (builtin && builtin->prepare && builtin->prepare(&call) != 0) {
    return Failure(RunResponse::INVALID_CONFIG, "the kernel's prepare refused the configuration");
  }
  // Poison the outputs so that elements the kernel never writes are caught.
  const int first_output = static_cast<int>(buffers_.size()) - spec_.num_outputs();
  for (int b = first_output; b < static_cast<int>(buffers_.size()); ++b) {
    std::fill(buffer_ptrs_[b], buffer_ptrs_[b] + sizes[b], std::numeric_limits<float>::quiet_NaN());
  }
  double start = NowMs();
  if (!RunOnce(call, response)) return response;
  double first_run_ms = NowMs() - start;
  double max_rel_error = 0;
  if (!MemoryIntact(response) || !OutputsMatch(response, max_rel_error)) return response;
  for (int i = 1; i < request.warmup_runs(); ++i) {
    start = NowMs();
    if (!RunOnce(call, response)) return response;
    first_run_ms = std::min(first_run_ms, NowMs() - start);
  }
  // Repeat fast kernels inside a sample so the clock's resolution does not matter.
  const int64_t iterations = std::clamp<int64_t>(
      static_cast<int64_t>(std::ceil(request.min_sample_ms() / std::max(first_run_ms, 1e-4))), 1,
      1 << 20);
  const double sampling_start = NowMs();
  std::vector<double> samples;
  double sum = 0, sum_sq = 0;
  while (static_cast<int>(samples.size()) < std::max(1, request.max_repeats())) {
    start = NowMs();
    for (int64_t it = 0; it < iterations; ++it) {
      if (!RunOnce(call, response)) return response;
    }
    const double ms = (NowMs() - start) / static_cast<double>(iterations);
    samples.push_back(ms);
    sum += ms;
    sum_sq += ms * ms;
    const double n = static_cast<double>(samples.size());
    if (static_cast<int>(samples.size()) < request.min_repeats()) continue;
    const double mean = sum / n;
    const double cv = std::sqrt(std::max(0.0, sum_sq / n - mean * mean)) / mean;
    if (cv <= request.target_cv() || NowMs() - sampling_start >= request.max_seconds() * 1e3) {
      break;
    }
  }
  if (!MemoryIntact(response)) return response;
  response.set_status(RunResponse::OK);
  response.set_max_rel_error(max_rel_error);
  for (double s : samples) response.add_times_ms(s);
  return response;
}

}  // namespace ktune::runner
