// Early-return helpers for absl::Status / absl::StatusOr, which Abseil 20220623 lacks.
#ifndef KTUNE_COMMON_STATUS_MACROS_H_
#define KTUNE_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define KTUNE_CONCAT_INNER_(a, b) a##b
#define KTUNE_CONCAT_(a, b) KTUNE_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status) and returns it from the enclosing function unless OK.
#define KTUNE_RETURN_IF_ERROR(expr)                \
  do {                                             \
    ::absl::Status ktune_status_ = (expr);         \
    if (!ktune_status_.ok()) return ktune_status_; \
  } while (0)

// `lhs` = value of `rexpr` (an absl::StatusOr<T>), or returns its status from the enclosing
// function. `lhs` may be a declaration: KTUNE_ASSIGN_OR_RETURN(auto x, F());
#define KTUNE_ASSIGN_OR_RETURN(lhs, rexpr) \
  KTUNE_ASSIGN_OR_RETURN_IMPL_(KTUNE_CONCAT_(ktune_statusor_, __LINE__), lhs, rexpr)

#define KTUNE_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                 \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // KTUNE_COMMON_STATUS_MACROS_H_
