// POSIX file helpers with statuses that say what failed and what to do:
// descriptors closed on scope exit, whole writes and reads despite short
// ones and EINTR, durable directory entries.
//
//   int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
//   if (fd < 0) return OpenError(errno, path);
//   ScopedFd closer(fd);
//   COMITY_ASSIGN_OR_RETURN(size_t got, ReadFull(fd, buf, sizeof(buf), 0, path));
#ifndef COMITY_SERVER_UTIL_POSIX_FILE_H_
#define COMITY_SERVER_UTIL_POSIX_FILE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace comity {

// Closes a file descriptor on scope exit unless released. Not thread-safe.
class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ~ScopedFd();
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  int get() const { return fd_; }
  // Gives up ownership.
  int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  // Closes now, returning what close(2) returned.
  int Close();

 private:
  int fd_;
};

// Internal naming `what` and errno, or ResourceExhausted when the disk or
// quota is full.
absl::Status IoError(int err, absl::string_view what);
// NotFound, PermissionDenied or Internal for a failed open of `path`.
absl::Status OpenError(int err, const std::string& path);
// Creates directory `path` (mode 0700) unless it exists.
absl::Status MakeDir(const std::string& path);
// Creates directory `path` and any missing parents (each mode 0700, each
// made durable in its parent), like `mkdir -p`. OK if it exists as a
// directory; FailedPrecondition naming the path if it or a parent exists as
// something else; else as IoError.
absl::Status MakeDirs(const std::string& path);
// Makes the entries of directory `path` (creations, renames, removals)
// durable.
absl::Status SyncDir(const std::string& path);
// Writes all of `data` to `fd`, retrying short writes and EINTR.
// `on_written` (if set) sees each piece that reached the file, so that on an
// error the caller knows how much did.
absl::Status WriteAll(int fd, absl::string_view data, const std::string& path,
                      const std::function<void(absl::string_view)>& on_written = nullptr);
// Reads up to `len` bytes at `offset` (fewer only at end of file), retrying
// short reads and EINTR. Returns the number of bytes read.
absl::StatusOr<size_t> ReadFull(int fd, char* buf, size_t len, uint64_t offset,
                                const std::string& path);
// Removes `path`; true if it existed.
absl::StatusOr<bool> RemoveIfExists(const std::string& path);

// A new file beside `path`, to be renamed to it once written:
// "DIR/.NAME.XXXXXX.partial" with a fresh random part, created O_EXCL (never
// an existing file, nor the target of a link planted there), mode 0600.
// Returns its descriptor, which the caller owns, and its path. Errors as
// OpenError.
absl::StatusOr<std::pair<int, std::string>> CreateTempFileBeside(const std::string& path);
// Renames `from` to `to`, replacing a file there only if `replace`;
// otherwise AlreadyExists if `to` exists, checked atomically
// (RENAME_NOREPLACE, or link(2) where the file system lacks it). Else as
// IoError. Does not sync the directory.
absl::Status RenameFile(const std::string& from, const std::string& to, bool replace);

}  // namespace comity

#endif  // COMITY_SERVER_UTIL_POSIX_FILE_H_
