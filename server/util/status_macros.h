// Propagation macros for absl::Status, which the Abseil of Debian 12 (LTS
// 2022-06) does not ship.
//
//   absl::StatusOr<Key> LoadKey(const std::string& path) {
//     COMITY_ASSIGN_OR_RETURN(std::string pem, ReadFile(path));
//     COMITY_RETURN_IF_ERROR(CheckMode(path));
//     ...
//   }
#ifndef COMITY_SERVER_UTIL_STATUS_MACROS_H_
#define COMITY_SERVER_UTIL_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define COMITY_STATUS_CONCAT_INNER_(a, b) a##b
#define COMITY_STATUS_CONCAT_(a, b) COMITY_STATUS_CONCAT_INNER_(a, b)

// A unique name per expansion, so that the macro may nest (a lambda in
// `expr` that uses it too) without shadowing.
#define COMITY_RETURN_IF_ERROR(expr) \
  COMITY_RETURN_IF_ERROR_IMPL_(COMITY_STATUS_CONCAT_(comity_status_, __COUNTER__), expr)
#define COMITY_RETURN_IF_ERROR_IMPL_(status, expr) \
  do {                                             \
    ::absl::Status status = (expr);                \
    if (!status.ok()) return status;               \
  } while (false)

#define COMITY_ASSIGN_OR_RETURN(lhs, expr) \
  COMITY_ASSIGN_OR_RETURN_IMPL_(COMITY_STATUS_CONCAT_(comity_statusor_, __COUNTER__), lhs, expr)

#define COMITY_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // COMITY_SERVER_UTIL_STATUS_MACROS_H_
