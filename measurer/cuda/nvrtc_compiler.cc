#include "measurer/cuda/nvrtc_compiler.h"

#include <unistd.h>
#include <xxhash.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "measurer/cuda/cuda_libraries.h"

namespace ktune::cuda {
namespace {

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Writes through a temporary file and a rename, so that concurrent workers sharing the cache
// never see half a file.
bool WriteFileAtomically(const std::filesystem::path& path, const std::string& data) {
  const std::filesystem::path tmp =
      path.string() + absl::StrCat(".tmp.", ::getpid(), ".",
                                   std::hash<std::thread::id>()(std::this_thread::get_id()));
  {
    std::ofstream out(tmp, std::ios::binary);
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
    if (!out) return false;
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  return !ec;
}

// Everything the cubin depends on: the compiler, its options (include folder, defines,
// architecture) and the source.
std::string CacheKey(const cuda_runner::Program& p, const std::string& compiler,
                     const std::vector<std::string>& options) {
  // "compute cache off": entries from before the runner turned the driver's compute cache off
  // may hold an empty ptxas report (cuda_runner_main.cc); this keeps them out.
  std::string text = absl::StrCat(compiler, "\ncompute cache off\n", p.entry(), "\n");
  for (const std::string& o : options) absl::StrAppend(&text, o, "\n");
  absl::StrAppend(&text, p.source());
  const XXH128_hash_t h = XXH3_128bits(text.data(), text.size());
  return absl::StrFormat("%016x%016x", h.high64, h.low64);
}

}  // namespace

void ParsePtxasReport(const std::string& log, const std::string& entry,
                      cuda_runner::CompileResult* result) {
  // The report of `entry` runs from its "Compiling entry function" line to the next one.
  std::string section = log;
  const std::string marker = absl::StrCat("Compiling entry function '", entry, "'");
  if (size_t at = log.find(marker); at != std::string::npos) {
    section = log.substr(at);
    if (size_t next = section.find("Compiling entry function", marker.size());
        next != std::string::npos) {
      section = section.substr(0, next);
    }
  }
  std::smatch m;
  if (std::regex_search(section, m, std::regex(R"(Used (\d+) registers)"))) {
    result->set_registers(std::stoi(m[1]));
  }
  if (std::regex_search(section, m, std::regex(R"((\d+) bytes smem)"))) {
    result->set_shared_bytes(std::stoi(m[1]));
  }
  if (std::regex_search(section, m,
                        std::regex(R"((\d+) bytes spill stores, (\d+) bytes spill loads)"))) {
    result->set_spill_bytes(std::stoi(m[1]) + std::stoi(m[2]));
  }
}

cuda_runner::CompileResult CompileProgram(const cuda_runner::Program& program,
                                          const std::string& cache_dir) {
  cuda_runner::CompileResult result;
  absl::StatusOr<const Nvrtc*> nvrtc_or = Nvrtc::Get();
  if (!nvrtc_or.ok()) {
    result.set_log(std::string(nvrtc_or.status().message()));
    return result;
  }
  const Nvrtc& nvrtc = **nvrtc_or;
  std::vector<std::string> options = {"-std=c++17",
                                      absl::StrCat("-arch=", program.arch()),
                                      "-default-device",
                                      "-Xptxas=-v",
                                      absl::StrCat("-I", CudaIncludeDir()),
                                      absl::StrCat("-I", CudaIncludeDir(), "/cccl")};
  for (const std::string& d : program.defines()) options.push_back("-D" + d);
  const std::string key = CacheKey(program, "nvrtc " + nvrtc.VersionText(), options);
  const std::filesystem::path cubin = std::filesystem::path(cache_dir) / (key + ".cubin");
  const std::filesystem::path report = std::filesystem::path(cache_dir) / (key + ".log");
  if (!cache_dir.empty() && std::filesystem::exists(cubin) && std::filesystem::exists(report)) {
    result.set_ok(true);
    result.set_cached(true);
    result.set_cubin_path(cubin.string());
    result.set_log(ReadFile(report));
    ParsePtxasReport(result.log(), program.entry(), &result);
    return result;
  }

  const auto start = std::chrono::steady_clock::now();
  nvrtcProgram prog = nullptr;
  nvrtcResult r = nvrtc.nvrtcCreateProgram(&prog, program.source().c_str(), "ktune_kernel.cu", 0,
                                           nullptr, nullptr);
  if (r != NVRTC_SUCCESS) {
    result.set_log(absl::StrCat("nvrtcCreateProgram: ", nvrtc.nvrtcGetErrorString(r)));
    return result;
  }
  std::vector<const char*> argv;
  for (const std::string& o : options) argv.push_back(o.c_str());
  r = nvrtc.nvrtcCompileProgram(prog, static_cast<int>(argv.size()), argv.data());
  size_t log_size = 0;
  nvrtc.nvrtcGetProgramLogSize(prog, &log_size);
  std::string log(log_size, '\0');
  if (log_size > 0) nvrtc.nvrtcGetProgramLog(prog, log.data());
  while (!log.empty() && (log.back() == '\0' || log.back() == '\n')) log.pop_back();
  result.set_log(log);
  if (r == NVRTC_SUCCESS) {
    size_t size = 0;
    nvrtc.nvrtcGetCUBINSize(prog, &size);
    std::string binary(size, '\0');
    if (size > 0 && nvrtc.nvrtcGetCUBIN(prog, binary.data()) == NVRTC_SUCCESS) {
      std::filesystem::path out = cubin;
      if (cache_dir.empty()) {
        out = std::filesystem::temp_directory_path() / (key + ".cubin");
      } else {
        std::error_code ec;
        std::filesystem::create_directories(cache_dir, ec);
      }
      if (WriteFileAtomically(out, binary) &&
          (cache_dir.empty() || WriteFileAtomically(report, log))) {
        result.set_ok(true);
        result.set_cubin_path(out.string());
        ParsePtxasReport(log, program.entry(), &result);
      } else {
        result.set_log(absl::StrCat("cannot write the cubin to ", out.string()));
      }
    } else {
      result.set_log(absl::StrCat("NVRTC produced no cubin for ", program.arch(),
                                  " (a virtual architecture?)"));
    }
  } else if (result.log().empty()) {
    result.set_log(nvrtc.nvrtcGetErrorString(r));
  }
  nvrtc.nvrtcDestroyProgram(&prog);
  result.set_compile_ms(
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  return result;
}

std::vector<cuda_runner::CompileResult> CompileAll(
    const std::vector<cuda_runner::Program>& programs, const std::string& cache_dir, int threads) {
  std::vector<cuda_runner::CompileResult> results(programs.size());
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  threads = std::min<int>(threads, static_cast<int>(programs.size()));
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i = next++; i < programs.size(); i = next++) {
      results[i] = CompileProgram(programs[i], cache_dir);
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (std::thread& t : pool) t.join();
  return results;
}

}  // namespace ktune::cuda
