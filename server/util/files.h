// Small file helpers with errors that name the path and the fix.
#ifndef COMITY_SERVER_UTIL_FILES_H_
#define COMITY_SERVER_UTIL_FILES_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace comity {

// Reads a whole file. NotFound / PermissionDenied / Internal name the path.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// Creates directory `dir` (mode 0700) unless it exists. FailedPrecondition
// naming it otherwise.
absl::Status EnsureDir(const std::string& dir);

// Reads a file that holds a private key: fails with FailedPrecondition when
// the group or others may read or write it (the fix: chmod 600).
absl::StatusOr<std::string> ReadPrivateFile(const std::string& path);

// Writes `data` to `path` atomically, replacing what is there: into a new
// temporary file beside it (a fresh name, O_EXCL: never an existing file or
// a link planted there), given `mode`, fsync'd, renamed to `path`, and the
// directory fsync'd. On an error before the rename `path` is as it was and
// no temporary file is left. Errors: as OpenError for the temporary file,
// ResourceExhausted when the disk is full, Internal otherwise; each names
// the path.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view data,
                                 int mode);

// `path` if absolute, else joined to `base_dir`.
std::string ResolvePath(absl::string_view base_dir, absl::string_view path);

// The directory part of `path` ("." if none).
std::string DirName(absl::string_view path);

}  // namespace comity

#endif  // COMITY_SERVER_UTIL_FILES_H_
