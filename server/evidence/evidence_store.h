// Evidence files: content-addressed storage, on the local disk, of files of
// any size (logs, disk images of hundreds of GB). The requested party adds
// files with ImportFile; the requesting party receives them in chunks with
// uploads that resume where they stopped after a dropped connection or a
// crash. Nothing is ever held whole in memory: every path uses fixed buffers
// (kIoBufferBytes) or the caller's chunks.
//
// Receiving side:
//
//   COMITY_ASSIGN_OR_RETURN(std::unique_ptr<EvidenceStore> store,
//                           EvidenceStore::Open(data_dir + "/evidence", kMaxBytes));
//   COMITY_ASSIGN_OR_RETURN(uint64_t offset,
//                           store->BeginUpload(transfer_id, size, sha256));
//   while (offset < size) {  // Ask the sender for the bytes from `offset` on.
//     std::string chunk = ...;
//     COMITY_RETURN_IF_ERROR(store->AppendChunk(transfer_id, offset, chunk));
//     offset += chunk.size();
//   }
//   COMITY_ASSIGN_OR_RETURN(std::string path, store->FinishUpload(transfer_id));
//
// Sending side:
//
//   COMITY_ASSIGN_OR_RETURN(auto hash_and_size, store->ImportFile("/srv/disk.img"));
//   COMITY_RETURN_IF_ERROR(store->Read(hash_and_size.first, offset, 1 << 20, send));
//
// On-disk layout under the root directory (kept across restarts):
//
//   ROOT/LOCK                  locked (flock) while an EvidenceStore is open on ROOT
//   ROOT/objects/ab/<hex>      a complete file, named by the 64 lower-case hex
//                              digits of its SHA-256 and filed under its first
//                              two; mode 0600, never written again
//   ROOT/partial/<id>.part     the bytes received so far for transfer <id>
//   ROOT/partial/<id>.meta     the declared size and SHA-256 of transfer <id>:
//                                "comity-evidence-partial 1\n"
//                                "size <decimal bytes>\n"
//                                "sha256 <64 lower-case hex digits>\n"
//   ROOT/partial/import~*      temporary copies made by ImportFile (removed
//                              on Open; '~' is not allowed in transfer ids)
//
// Directories are created with mode 0700 and files with mode 0600.
#ifndef COMITY_SERVER_EVIDENCE_EVIDENCE_STORE_H_
#define COMITY_SERVER_EVIDENCE_EVIDENCE_STORE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace comity {

// The evidence files under one root directory (layout above).
//
// Thread-safe. Calls for different transfers run in parallel; calls for the
// same transfer are serialized. Only one EvidenceStore may be open on a root
// at a time, in any process (enforced with a lock file).
//
// A transfer id names one upload: 1 to 128 characters from [A-Za-z0-9._-].
// Every BeginUpload should end with FinishUpload or AbortUpload; until then
// the upload holds a file descriptor. Destroying the store (or a crash)
// keeps the partial uploads on disk, and BeginUpload on a new store resumes
// them.
class EvidenceStore {
 public:
  // Size of the buffers used to re-hash, import and copy files.
  static constexpr size_t kIoBufferBytes = size_t{1} << 20;
  // Largest chunk that Read accepts.
  static constexpr size_t kMaxReadChunkBytes = size_t{64} << 20;
  // How much of a file a ContentCheck sees.
  static constexpr size_t kHeadBytes = size_t{64} << 10;

  // A last look at a complete, verified file before it is stored: its
  // first kHeadBytes (all of it if smaller) and its size. A non-OK status
  // refuses the file, which is then discarded.
  using ContentCheck = std::function<absl::Status(absl::string_view head, uint64_t size)>;

  // Opens the store at `root`, creating ROOT, ROOT/objects and ROOT/partial
  // (mode 0700) if needed, and removing leftovers of interrupted imports.
  // `max_file_bytes` caps the size of any one file: uploads declaring more,
  // and imports of larger files, fail with ResourceExhausted.
  // Errors: InvalidArgument for an empty root; FailedPrecondition if another
  // EvidenceStore has ROOT open; PermissionDenied or Internal (naming the
  // path) if a directory or the lock file cannot be created or opened.
  static absl::StatusOr<std::unique_ptr<EvidenceStore>> Open(const std::string& root,
                                                             uint64_t max_file_bytes);
  ~EvidenceStore();
  EvidenceStore(const EvidenceStore&) = delete;
  EvidenceStore& operator=(const EvidenceStore&) = delete;

  // Starts or resumes the upload `transfer_id` of a file of `size` bytes
  // whose SHA-256 is `sha256` (32 raw bytes). Returns the number of bytes
  // already received, from which the sender must continue: 0 for a new
  // upload; for a resumed one the length of the partial file, which is
  // re-read (in kIoBufferBytes pieces) to rebuild the hash state; `size` if
  // the object is already stored (nothing to send; FinishUpload still returns
  // its path). Calling it again for an upload in progress is harmless.
  // Errors: InvalidArgument for a bad transfer id or a hash that is not 32
  // bytes, or if the object is stored with a size other than `size`;
  // ResourceExhausted if `size` is over the store's limit; FailedPrecondition
  // if the transfer id has a partial upload for another size or hash (finish
  // or abort that one first); Internal on I/O errors.
  absl::StatusOr<uint64_t> BeginUpload(const std::string& transfer_id, uint64_t size,
                                       absl::string_view sha256);

  // Appends `data` to the upload `transfer_id`, writing it through to the
  // partial file. `offset` must equal the number of bytes received so far.
  // Errors: FailedPrecondition if there is no upload in progress under that
  // id (call BeginUpload) or `offset` is not the expected one (the message
  // names the offset to send from); InvalidArgument if the chunk would go
  // past the declared size, or for a bad transfer id; ResourceExhausted if
  // the disk is full, Internal on other write errors: in both cases the bytes
  // that did reach the file count as received, and BeginUpload tells from
  // where to continue.
  absl::Status AppendChunk(const std::string& transfer_id, uint64_t offset,
                           absl::string_view data);

  // Completes the upload `transfer_id` once all its bytes are in, through
  // VerifiedFileWriter (server/crypto/verified_file.h): checks the partial
  // file's size and SHA-256, syncs it and moves it atomically into objects/
  // (rename, then sync of the directory). Returns the object's path.
  // Errors: FailedPrecondition if there is no upload in progress under that
  // id, or bytes are still missing (the message says from which offset);
  // DataLoss if the bytes received do not have the declared SHA-256: the
  // partial upload is then discarded and the sender must start again from 0;
  // ResourceExhausted or Internal on I/O errors, after which the partial
  // upload is discarded too (unless the error came once the object was
  // named: then BeginUpload finds it stored). With a `check`, the file (or
  // the object already stored) must also pass it, once its hash checked
  // out; if it does not, its status is returned and a partial upload is
  // discarded.
  absl::StatusOr<std::string> FinishUpload(const std::string& transfer_id,
                                           const ContentCheck& check = nullptr);

  // Discards the upload `transfer_id`, in memory and on disk.
  // Errors: InvalidArgument for a bad transfer id; NotFound if there was
  // nothing to discard; Internal if the partial files cannot be removed.
  absl::Status AbortUpload(const std::string& transfer_id);

  // Whether the object with SHA-256 `sha256` (32 raw bytes) is stored
  // complete. False for a hash of the wrong length.
  bool Has(absl::string_view sha256) const;

  // The path the object with SHA-256 `sha256` (32 raw bytes) has, or would
  // have, in the store; empty for a hash of the wrong length.
  std::string PathOf(absl::string_view sha256) const;

  // Streams the stored object with SHA-256 `sha256`, from byte `offset` to
  // its end, to `fn` in pieces of `chunk_bytes` (the last one may be
  // shorter; none if `offset` is the object's size). Stops at the first
  // non-OK status `fn` returns and returns it. The content is not re-hashed.
  // Errors: InvalidArgument for a hash that is not 32 bytes or a chunk_bytes
  // of 0 or over kMaxReadChunkBytes; NotFound if the object is not stored;
  // OutOfRange if `offset` is past its end; Internal on read errors.
  absl::Status Read(absl::string_view sha256, uint64_t offset, size_t chunk_bytes,
                    const std::function<absl::Status(absl::string_view)>& fn) const;

  // Copies the local file at `path` into the store, streaming it (one pass
  // that hashes and copies). Returns its SHA-256 (32 raw bytes) and size.
  // Importing a file that is already stored is harmless.
  // Errors: NotFound / PermissionDenied if `path` cannot be opened;
  // ResourceExhausted if the file is over the store's limit or the disk is
  // full; Internal on other I/O errors.
  absl::StatusOr<std::pair<std::string, uint64_t>> ImportFile(const std::string& path);
  // ImportFile of a file the caller opened (read from its current offset;
  // not closed), named `label` in errors, that must pass `check` (if any).
  // InvalidArgument for anything but a regular file.
  absl::StatusOr<std::pair<std::string, uint64_t>> ImportFrom(
      int fd, const std::string& label, const ContentCheck& check = nullptr);

  const std::string& root() const { return root_; }

 private:
  struct Upload;

  EvidenceStore(std::string root, uint64_t max_file_bytes, int lock_fd);

  std::string PartPath(const std::string& transfer_id) const;
  std::string MetaPath(const std::string& transfer_id) const;

  // The upload registered under `transfer_id`, unlocked. If there is none,
  // registers a new one (not yet loaded) if `create`, else returns null.
  // Callers lock it and, if they find it closed, look it up again.
  std::shared_ptr<Upload> Find(const std::string& transfer_id, bool create);
  // Forgets `upload` (locked by the caller): closes its file, marks it
  // closed and removes it from `uploads_`. Leaves the files on disk, so it
  // must come after any change to them.
  void Forget(const std::string& transfer_id, Upload& upload);
  // Fills a just-registered upload from the disk or starts it anew.
  absl::Status Load(const std::string& transfer_id, uint64_t size,
                    absl::string_view sha256, Upload& upload);
  // Moves the complete, synced file `from` to the object path for `sha256`.
  absl::Status Install(const std::string& from, absl::string_view sha256);
  // Removes the partial files of `transfer_id`; true if there were any.
  absl::StatusOr<bool> RemovePartialFiles(const std::string& transfer_id);

  const std::string root_;
  const std::string objects_dir_;
  const std::string partial_dir_;
  const uint64_t max_file_bytes_;
  const int lock_fd_;  // Owned; holds the flock on ROOT/LOCK.

  absl::Mutex mu_;  // Never held while locking an Upload.
  std::map<std::string, std::shared_ptr<Upload>> uploads_ ABSL_GUARDED_BY(mu_);
};

}  // namespace comity

#endif  // COMITY_SERVER_EVIDENCE_EVIDENCE_STORE_H_
