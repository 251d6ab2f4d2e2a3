#include "db/device_family.h"

#include <cctype>
#include <utility>

#include "absl/strings/match.h"

namespace ktune {

std::string InferDeviceFamily(absl::string_view model_name) {
  // A TVM target's class ("tvm:llvm -mcpu=skylake"): its kind, as ktune.tvm names the family.
  if (absl::StartsWith(model_name, "tvm:")) {
    return std::string(model_name.substr(0, model_name.find(' ')));
  }
  std::string n;
  for (char c : model_name) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      n.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
    }
  }
  // Ordered: the first key contained in the normalised name wins, so longer, more specific keys
  // come before the shorter keys they contain.
  static const std::pair<const char*, const char*> kTable[] = {
      {"GH200", "hopper"},    {"H100", "hopper"},      {"H200", "hopper"},
      {"H800", "hopper"},     {"B200", "blackwell"},   {"B100", "blackwell"},
      {"GB200", "blackwell"}, {"RTX50", "blackwell"},  {"L40", "ada"},
      {"L4", "ada"},          {"RTX40", "ada"},        {"RTX6000ADA", "ada"},
      {"A100", "ampere"},     {"A800", "ampere"},      {"A6000", "ampere"},
      {"A5000", "ampere"},    {"A4000", "ampere"},     {"A40", "ampere"},
      {"A30", "ampere"},      {"A10", "ampere"},       {"RTX30", "ampere"},
      {"TITANRTX", "turing"}, {"RTXTITAN", "turing"},  {"RTX20", "turing"},
      {"T4", "turing"},       {"QUADRORTX", "turing"}, {"V100", "volta"},
      {"TITANV", "volta"},    {"P100", "pascal"},      {"GTX10", "pascal"},
      {"MI300", "cdna3"},     {"MI250", "cdna2"},      {"MI210", "cdna2"},
      {"MI100", "cdna1"},     {"W6600", "rdna2"},      {"W6800", "rdna2"},
      {"RX6", "rdna2"},       {"W7900", "rdna3"},      {"RX7", "rdna3"},
  };
  for (const auto& [key, family] : kTable) {
    if (n.find(key) != std::string::npos) return family;
  }
  return "";
}

}  // namespace ktune
