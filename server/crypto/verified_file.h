// A file written from a stream whose size and SHA-256 are known in advance
// (an evidence file, a database backup), which gets its final name only
// once the bytes written check out. Until then they are in a temporary file
// beside it (O_EXCL, mode 0600); Commit checks size and SHA-256, syncs the
// file, renames it into place and syncs the directory. So a file under the
// final name is always whole and checked, and a failure leaves nothing: not
// the file, not the temporary one.
//
//   COMITY_ASSIGN_OR_RETURN(std::unique_ptr<VerifiedFileWriter> file,
//                           VerifiedFileWriter::Create("/exports/case-17/disk.img"));
//   while (reader->Read(&chunk)) COMITY_RETURN_IF_ERROR(file->Append(chunk.data()));
//   COMITY_ASSIGN_OR_RETURN(std::string hex,
//                           file->Commit(declared_size, declared_sha256));
//
// A transfer that can resume keeps its temporary file across a cut:
//
//   VerifiedFileWriter::Options options;
//   options.temp_path = partial_dir + "/" + id + ".part";  // Same file system.
//   auto file = VerifiedFileWriter::Create(object_path, options);  // First time.
//   ...; COMITY_RETURN_IF_ERROR((*file)->Suspend());             // Cut short.
//   auto again = VerifiedFileWriter::Resume(object_path, options.temp_path,
//                                           bytes_acknowledged, options);
//   // (*again)->size() == bytes_acknowledged: append from there on.
#ifndef COMITY_SERVER_CRYPTO_VERIFIED_FILE_H_
#define COMITY_SERVER_CRYPTO_VERIFIED_FILE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/crypto/sha256.h"

namespace comity {

// Writes one file, checked before it is named (above). Thread-compatible,
// not thread-safe: one thread at a time. Neither copyable nor movable; the
// final and temporary paths must stay on one file system (rename(2)).
//
// A writer ends in one of three ways: Commit (the file is in place, or, if
// Commit fails, nothing is), Suspend (the temporary file is kept for Resume),
// or destruction without either, which removes the temporary file.
class VerifiedFileWriter {
 public:
  struct Options {
    // The final file's mode (the temporary file is 0600 until Commit).
    int mode = 0600;
    // Replace a file that exists under the final name. Otherwise Create and
    // Resume refuse to start, and Commit never replaces one that appeared
    // meanwhile (the rename is atomic: RENAME_NOREPLACE, or link(2)).
    bool overwrite = false;
    // The temporary file's path; empty: a fresh name beside the final file,
    // ".NAME.<random>.partial". Give one to resume after a crash.
    std::string temp_path;
  };

  // Starts writing `final_path`: creates its missing parent directories
  // (mode 0700, like `mkdir -p`) and the temporary file (O_EXCL: an
  // existing temporary file or a link planted there is refused).
  // Errors: InvalidArgument if `final_path` names no file (empty, ends in
  // '/'); AlreadyExists naming it if it exists and !options.overwrite, or if
  // options.temp_path exists (Resume it, or remove it); PermissionDenied,
  // FailedPrecondition (a parent is not a directory), ResourceExhausted or
  // Internal, naming the path, when a directory or the file cannot be made.
  static absl::StatusOr<std::unique_ptr<VerifiedFileWriter>> Create(
      const std::string& final_path, const Options& options);
  static absl::StatusOr<std::unique_ptr<VerifiedFileWriter>> Create(
      const std::string& final_path);

  // Continues writing `final_path` into the existing temporary file
  // `temp_path` (left by Suspend, or by a process that died), keeping its
  // first `offset` bytes: longer, it is cut to `offset` (bytes written but
  // never acknowledged); these bytes are read back to rebuild the SHA-256
  // state. Missing parent directories of `final_path` are made as by
  // Create. options.temp_path is ignored. Errors: NotFound if `temp_path`
  // does not exist; FailedPrecondition if it holds fewer than `offset`
  // bytes (the message says how many: resume from there) or is not a
  // regular file; AlreadyExists as for Create; Internal on I/O errors.
  static absl::StatusOr<std::unique_ptr<VerifiedFileWriter>> Resume(
      const std::string& final_path, const std::string& temp_path, uint64_t offset,
      const Options& options);

  // Removes the temporary file unless committed or suspended.
  ~VerifiedFileWriter();
  VerifiedFileWriter(const VerifiedFileWriter&) = delete;
  VerifiedFileWriter& operator=(const VerifiedFileWriter&) = delete;

  // Appends `data` to the temporary file. On an error the bytes that did
  // reach the file still count (size() says how many), so that a resumable
  // transfer knows where to continue. Every kWritebackBytes the kernel is
  // asked to start writing what came (sync_file_range), so that dirty pages
  // do not pile up for Commit's fsync however large the file. Errors:
  // FailedPrecondition after Commit or Suspend; ResourceExhausted when the
  // disk is full; Internal.
  absl::Status Append(absl::string_view data);
  static constexpr uint64_t kWritebackBytes = uint64_t{32} << 20;

  // A last look at the temporary file (its path) once its size and SHA-256
  // checked out, before it is named: a non-OK status discards it.
  using Vet = std::function<absl::Status(const std::string& temp_path)>;

  // Checks what was appended against `expected_size` (unless nullopt: the
  // hash alone) and `expected_sha256` (32 raw bytes), then runs `vet` (if
  // set) on the temporary file, syncs it, gives it options.mode, renames it
  // to the final path and syncs that directory. Returns the SHA-256 in
  // lower-case hex. On any error up to the rename the temporary file is
  // removed and the final path left as it was; an error syncing the
  // directory after it is returned with the checked file in place.
  // Errors: DataLoss when size or SHA-256 differ (the message names the
  // final path, and what was expected and received); InvalidArgument if
  // `expected_sha256` is not 32 bytes; what `vet` returned; AlreadyExists
  // if a file appeared under the final name (and !options.overwrite);
  // FailedPrecondition after Commit or Suspend; ResourceExhausted or
  // Internal on I/O errors.
  absl::StatusOr<std::string> Commit(std::optional<uint64_t> expected_size,
                                     absl::string_view expected_sha256,
                                     const Vet& vet = nullptr);

  // Syncs and closes the temporary file and keeps it, for Resume with
  // offset size(). Errors: FailedPrecondition after Commit or Suspend;
  // Internal if it cannot be synced (it is kept all the same).
  absl::Status Suspend();

  // Bytes appended so far (with those kept by Resume).
  uint64_t size() const { return size_; }
  const std::string& final_path() const { return final_path_; }
  const std::string& temp_path() const { return temp_path_; }

 private:
  VerifiedFileWriter(std::string final_path, std::string temp_path, int fd, uint64_t size,
                     const Options& options);
  // Closes the file and removes the temporary one; `status` is returned.
  absl::Status Discard(absl::Status status);

  const std::string final_path_;
  const std::string temp_path_;
  const Options options_;
  int fd_;  // Owned; -1 once committed, suspended or discarded.
  uint64_t size_;
  Sha256Stream hash_;
};

}  // namespace comity

#endif  // COMITY_SERVER_CRYPTO_VERIFIED_FILE_H_
