#include "server/crypto/verified_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/util/files.h"
#include "server/util/hex.h"
#include "server/util/posix_file.h"
#include "server/util/status_macros.h"

namespace comity {
namespace {

constexpr size_t kRehashBufferBytes = size_t{1} << 20;

std::string BaseName(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

absl::Status RefuseExisting(const std::string& final_path,
                            const VerifiedFileWriter::Options& options) {
  if (options.overwrite || !Exists(final_path)) return absl::OkStatus();
  return absl::AlreadyExistsError(
      absl::StrCat(final_path, " exists; name a new file (it is not overwritten)"));
}

}  // namespace

VerifiedFileWriter::VerifiedFileWriter(std::string final_path, std::string temp_path,
                                       int fd, uint64_t size, const Options& options)
    : final_path_(std::move(final_path)),
      temp_path_(std::move(temp_path)),
      options_(options),
      fd_(fd),
      size_(size) {}

VerifiedFileWriter::~VerifiedFileWriter() {
  if (fd_ >= 0) Discard(absl::OkStatus()).IgnoreError();
}

absl::StatusOr<std::unique_ptr<VerifiedFileWriter>> VerifiedFileWriter::Create(
    const std::string& final_path) {
  return Create(final_path, Options());
}

absl::StatusOr<std::unique_ptr<VerifiedFileWriter>> VerifiedFileWriter::Create(
    const std::string& final_path, const Options& options) {
  const std::string name = BaseName(final_path);
  if (name.empty() || name == "." || name == "..") {
    return absl::InvalidArgumentError(
        absl::StrCat("'", final_path, "' does not name a file"));
  }
  const std::string dir = DirName(final_path);
  COMITY_RETURN_IF_ERROR(MakeDirs(dir));
  COMITY_RETURN_IF_ERROR(RefuseExisting(final_path, options));
  if (options.temp_path.empty()) {
    COMITY_ASSIGN_OR_RETURN(auto temp, CreateTempFileBeside(final_path));
    return std::unique_ptr<VerifiedFileWriter>(new VerifiedFileWriter(
        final_path, std::move(temp.second), temp.first, 0, options));
  }
  const std::string& temp = options.temp_path;
  const int fd =
      ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST) {
      return absl::AlreadyExistsError(absl::StrCat(
          "temporary file ", temp, " exists: resume it or remove it (", final_path, ")"));
    }
    return OpenError(errno, temp);
  }
  return std::unique_ptr<VerifiedFileWriter>(
      new VerifiedFileWriter(final_path, temp, fd, 0, options));
}

absl::StatusOr<std::unique_ptr<VerifiedFileWriter>> VerifiedFileWriter::Resume(
    const std::string& final_path, const std::string& temp_path, uint64_t offset,
    const Options& options) {
  COMITY_RETURN_IF_ERROR(MakeDirs(DirName(final_path)));
  COMITY_RETURN_IF_ERROR(RefuseExisting(final_path, options));
  const int fd = ::open(temp_path.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return OpenError(errno, temp_path);
  ScopedFd closer(fd);
  struct stat st;
  if (::fstat(fd, &st) != 0)
    return IoError(errno, absl::StrCat("cannot stat ", temp_path));
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("temporary file ", temp_path, " is not a regular file"));
  }
  const uint64_t held = static_cast<uint64_t>(st.st_size);
  if (held < offset) {
    return absl::FailedPreconditionError(absl::StrCat(
        "temporary file ", temp_path, " holds ", held, " bytes, fewer than the ", offset,
        " to resume from: resume from ", held));
  }
  if (held > offset && ::ftruncate(fd, static_cast<off_t>(offset)) != 0) {
    return IoError(errno, absl::StrCat("cannot truncate ", temp_path));
  }
  if (::lseek(fd, static_cast<off_t>(offset), SEEK_SET) < 0) {
    return IoError(errno, absl::StrCat("cannot seek in ", temp_path));
  }
  std::unique_ptr<VerifiedFileWriter> writer(
      new VerifiedFileWriter(final_path, temp_path, closer.Release(), offset, options));
  std::vector<char> buf(kRehashBufferBytes);
  for (uint64_t at = 0; at < offset;) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), offset - at));
    COMITY_ASSIGN_OR_RETURN(size_t got,
                            ReadFull(writer->fd_, buf.data(), want, at, temp_path));
    if (got != want) {
      // Kept: the caller may resume from what is there.
      writer->Suspend().IgnoreError();
      return absl::InternalError(
          absl::StrCat("temporary file ", temp_path, " shrank while it was read"));
    }
    writer->hash_.Update(absl::string_view(buf.data(), got));
    at += got;
  }
  return writer;
}

absl::Status VerifiedFileWriter::Append(absl::string_view data) {
  if (fd_ < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(final_path_, ": already committed or suspended"));
  }
  const uint64_t from = size_;
  absl::Status written = WriteAll(fd_, data, temp_path_, [this](absl::string_view piece) {
    hash_.Update(piece);
    size_ += piece.size();
  });
  if (size_ / kWritebackBytes != from / kWritebackBytes) {
    const uint64_t window = (from / kWritebackBytes) * kWritebackBytes;
    // Advice only: an error here shows again, and is returned, at fsync.
    (void)::sync_file_range(fd_, static_cast<off_t>(window),
                            static_cast<off_t>(size_ - window), SYNC_FILE_RANGE_WRITE);
  }
  return written;
}

absl::StatusOr<std::string> VerifiedFileWriter::Commit(
    std::optional<uint64_t> expected_size, absl::string_view expected_sha256,
    const Vet& vet) {
  if (fd_ < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(final_path_, ": already committed or suspended"));
  }
  if (expected_sha256.size() != kSha256Size) {
    return Discard(absl::InvalidArgumentError(
        absl::StrCat(final_path_, ": the expected SHA-256 has ", expected_sha256.size(),
                     " bytes, not ", kSha256Size, "; nothing was saved")));
  }
  if (expected_size.has_value() && *expected_size != size_) {
    return Discard(absl::DataLossError(absl::StrCat(final_path_, ": received ", size_,
                                                    " bytes, expected ", *expected_size,
                                                    "; nothing was saved")));
  }
  const std::string actual = hash_.Finish();
  if (actual != expected_sha256) {
    return Discard(absl::DataLossError(absl::StrCat(
        final_path_, ": the ", size_, " bytes received have SHA-256 ", HexEncode(actual),
        ", expected ", HexEncode(expected_sha256), "; nothing was saved")));
  }
  if (vet) {
    absl::Status vetted = vet(temp_path_);
    if (!vetted.ok()) return Discard(std::move(vetted));
  }
  if ((options_.mode & 07777) != 0600 && ::fchmod(fd_, options_.mode & 07777) != 0) {
    return Discard(IoError(errno, absl::StrCat("cannot set the mode of ", temp_path_)));
  }
  if (::fsync(fd_) != 0) {
    return Discard(IoError(errno, absl::StrCat("cannot sync ", temp_path_)));
  }
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) {
    const int err = errno;
    (void)::unlink(temp_path_.c_str());
    return IoError(err, absl::StrCat("cannot close ", temp_path_));
  }
  const absl::Status renamed = RenameFile(temp_path_, final_path_, options_.overwrite);
  if (!renamed.ok()) {
    (void)::unlink(temp_path_.c_str());
    if (absl::IsAlreadyExists(renamed)) {
      return absl::AlreadyExistsError(absl::StrCat(
          final_path_, " appeared while it was written; it was left as it is"));
    }
    return renamed;
  }
  const std::string final_dir = DirName(final_path_);
  COMITY_RETURN_IF_ERROR(SyncDir(final_dir));
  if (DirName(temp_path_) != final_dir)
    COMITY_RETURN_IF_ERROR(SyncDir(DirName(temp_path_)));
  return HexEncode(actual);
}

absl::Status VerifiedFileWriter::Suspend() {
  if (fd_ < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(final_path_, ": already committed or suspended"));
  }
  const int fd = fd_;
  fd_ = -1;
  const bool synced = ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  if (!synced) return IoError(err, absl::StrCat("cannot sync ", temp_path_));
  return SyncDir(DirName(temp_path_));
}

absl::Status VerifiedFileWriter::Discard(absl::Status status) {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  (void)::unlink(temp_path_.c_str());
  return status;
}

}  // namespace comity
