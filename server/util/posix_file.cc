#include "server/util/posix_file.h"

#include <fcntl.h>
#include <stdio.h>   // renameat2, RENAME_NOREPLACE (glibc 2.28 on).
#include <stdlib.h>  // mkostemps.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "server/util/status_macros.h"

namespace comity {

ScopedFd::~ScopedFd() {
  if (fd_ >= 0) ::close(fd_);
}

int ScopedFd::Close() {
  int rc = ::close(fd_);
  fd_ = -1;
  return rc;
}

namespace {
std::string ErrnoText(int err) { return std::strerror(err); }
}  // namespace

absl::Status IoError(int err, absl::string_view what) {
  std::string msg = absl::StrCat(what, ": ", ErrnoText(err));
  if (err == ENOSPC || err == EDQUOT) {
    return absl::ResourceExhaustedError(absl::StrCat(msg, "; free disk space and retry"));
  }
  return absl::InternalError(msg);
}

absl::Status OpenError(int err, const std::string& path) {
  std::string msg = absl::StrCat("cannot open ", path, ": ", ErrnoText(err));
  if (err == ENOENT) return absl::NotFoundError(msg);
  if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(msg);
  return absl::InternalError(msg);
}

absl::Status MakeDir(const std::string& path) {
  if (::mkdir(path.c_str(), 0700) == 0 || errno == EEXIST) return absl::OkStatus();
  return IoError(errno, absl::StrCat("cannot create directory ", path));
}

absl::Status MakeDirs(const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("no directory named");
  std::string dir = path;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot create directory ", dir, ": it exists and is not a directory"));
  }
  const size_t slash = dir.rfind('/');
  const std::string parent = slash == std::string::npos ? "."
                             : slash == 0               ? "/"
                                                        : dir.substr(0, slash);
  if (slash != std::string::npos) COMITY_RETURN_IF_ERROR(MakeDirs(parent));
  if (::mkdir(dir.c_str(), 0700) != 0) {
    const int err = errno;
    if (err == EEXIST && ::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      return absl::OkStatus();  // Made meanwhile by someone else.
    }
    const std::string what = absl::StrCat("cannot create directory ", dir);
    if (err == EACCES || err == EPERM) {
      return absl::PermissionDeniedError(absl::StrCat(what, ": ", ErrnoText(err)));
    }
    return IoError(err, what);
  }
  return SyncDir(parent);
}

absl::Status SyncDir(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return IoError(errno, absl::StrCat("cannot open directory ", path));
  ScopedFd closer(fd);
  if (::fsync(fd) != 0) {
    return IoError(errno, absl::StrCat("cannot sync directory ", path));
  }
  return absl::OkStatus();
}

absl::Status WriteAll(int fd, absl::string_view data, const std::string& path,
                      const std::function<void(absl::string_view)>& on_written) {
  constexpr size_t kMaxWrite = size_t{1} << 30;
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, std::min(data.size() - done, kMaxWrite));
    if (n < 0) {
      if (errno == EINTR) continue;
      return IoError(errno, absl::StrCat("cannot write ", path));
    }
    if (n == 0) {
      return absl::InternalError(absl::StrCat("cannot write ", path, ": no progress"));
    }
    if (on_written) on_written(data.substr(done, static_cast<size_t>(n)));
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> ReadFull(int fd, char* buf, size_t len, uint64_t offset,
                                const std::string& path) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = ::pread(fd, buf + done, len - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return IoError(errno, absl::StrCat("cannot read ", path));
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

absl::StatusOr<bool> RemoveIfExists(const std::string& path) {
  if (::unlink(path.c_str()) == 0) return true;
  if (errno == ENOENT) return false;
  return IoError(errno, absl::StrCat("cannot remove ", path));
}

absl::StatusOr<std::pair<int, std::string>> CreateTempFileBeside(
    const std::string& path) {
  // The part of the final name kept in the temporary one (NAME_MAX is 255).
  constexpr size_t kMaxNameInTemp = 100;
  constexpr absl::string_view kSuffix = ".partial";
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash + 1);
  const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  std::string temp = absl::StrCat(slash == std::string::npos ? "" : dir, ".",
                                  name.substr(0, kMaxNameInTemp), ".XXXXXX", kSuffix);
  // mkostemps: O_CREAT | O_EXCL, mode 0600, a new random name on a clash.
  const int fd = ::mkostemps(temp.data(), static_cast<int>(kSuffix.size()), O_CLOEXEC);
  if (fd < 0) return OpenError(errno, temp);
  return std::make_pair(fd, std::move(temp));
}

absl::Status RenameFile(const std::string& from, const std::string& to, bool replace) {
  auto failed = [&](int err) -> absl::Status {
    if (err == EEXIST) return absl::AlreadyExistsError(absl::StrCat(to, " exists"));
    return IoError(err, absl::StrCat("cannot rename ", from, " to ", to));
  };
  if (replace) {
    return ::rename(from.c_str(), to.c_str()) == 0 ? absl::OkStatus() : failed(errno);
  }
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) {
    return absl::OkStatus();
  }
  if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP) return failed(errno);
  // A file system without RENAME_NOREPLACE: link(2) refuses an existing name.
  if (::link(from.c_str(), to.c_str()) != 0) return failed(errno);
  (void)::unlink(from.c_str());
  return absl::OkStatus();
}

}  // namespace comity
