#include "server/util/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/util/posix_file.h"
#include "server/util/status_macros.h"

namespace comity {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int err = errno;
    std::string msg = absl::StrCat("cannot read ", path, ": ", std::strerror(err));
    if (err == ENOENT) return absl::NotFoundError(msg);
    if (err == EACCES) return absl::PermissionDeniedError(msg);
    return absl::InternalError(msg);
  }
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) return absl::InternalError(absl::StrCat("error reading ", path));
  return buf.str();
}

absl::StatusOr<std::string> ReadPrivateFile(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    int err = errno;
    std::string msg = absl::StrCat("cannot read ", path, ": ", std::strerror(err));
    return err == ENOENT ? absl::NotFoundError(msg) : absl::InternalError(msg);
  }
  if ((st.st_mode & 077) != 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "private key file %s has mode %04o, readable by others; run: chmod 600 %s",
        path, st.st_mode & 07777, path));
  }
  return ReadFile(path);
}

absl::Status WriteFileAtomically(const std::string& path, absl::string_view data,
                                 int mode) {
  COMITY_ASSIGN_OR_RETURN(auto temp, CreateTempFileBeside(path));
  const std::string& tmp = temp.second;
  ScopedFd fd(temp.first);
  absl::Status st = WriteAll(fd.get(), data, tmp);
  if (st.ok() && ::fchmod(fd.get(), static_cast<mode_t>(mode & 07777)) != 0) {
    st = IoError(errno, absl::StrCat("cannot set the mode of ", tmp));
  }
  if (st.ok() && ::fsync(fd.get()) != 0) {
    st = IoError(errno, absl::StrCat("cannot sync ", tmp));
  }
  if (fd.Close() != 0 && st.ok()) st = IoError(errno, absl::StrCat("cannot close ", tmp));
  if (st.ok()) st = RenameFile(tmp, path, /*replace=*/true);
  if (!st.ok()) {
    (void)::unlink(tmp.c_str());
    return st;
  }
  return SyncDir(DirName(path));
}

std::string ResolvePath(absl::string_view base_dir, absl::string_view path) {
  if (path.empty() || path[0] == '/' || base_dir.empty()) return std::string(path);
  return absl::StrCat(base_dir, "/", path);
}

std::string DirName(absl::string_view path) {
  size_t slash = path.rfind('/');
  if (slash == absl::string_view::npos) return ".";
  if (slash == 0) return "/";
  return std::string(path.substr(0, slash));
}

absl::Status EnsureDir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::FailedPreconditionError(
        absl::StrCat("directory ", dir, ": cannot create: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace comity
