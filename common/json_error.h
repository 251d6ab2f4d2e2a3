// nlohmann::json's exception texts as users should read them.
#ifndef KTUNE_COMMON_JSON_ERROR_H_
#define KTUNE_COMMON_JSON_ERROR_H_

#include <string>

namespace ktune {

// `what` without nlohmann's "[json.exception.type_error.302] " prefix, which names its class,
// not the problem.
inline std::string WithoutJsonExceptionPrefix(const std::string& what) {
  const size_t bracket = what.find("] ");
  return what.rfind("[json.exception.", 0) == 0 && bracket != std::string::npos
             ? what.substr(bracket + 2)
             : what;
}

}  // namespace ktune

#endif  // KTUNE_COMMON_JSON_ERROR_H_
