#include "server/evidence/evidence_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "server/crypto/ed25519.h"
#include "server/crypto/random.h"
#include "server/crypto/sha256.h"
#include "server/crypto/verified_file.h"
#include "server/util/files.h"
#include "server/util/posix_file.h"
#include "server/util/hex.h"
#include "server/util/status_macros.h"

namespace comity {

// ---------------------------------------------------------------------------
// File helpers

namespace {

constexpr size_t kMaxTransferIdLength = 128;
constexpr char kMetaHeader[] = "comity-evidence-partial 1";
constexpr char kImportPrefix[] = "import~";

bool IsTransferIdChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' ||
         c == '-';
}

absl::Status ValidateTransferId(const std::string& id) {
  bool ok = !id.empty() && id.size() <= kMaxTransferIdLength &&
            std::all_of(id.begin(), id.end(), IsTransferIdChar);
  if (ok) return absl::OkStatus();
  std::string shown = absl::CHexEscape(absl::string_view(id).substr(0, 40));
  if (id.size() > 40) absl::StrAppend(&shown, "...");
  return absl::InvalidArgumentError(absl::StrFormat(
      "invalid transfer id \"%s\" (%d characters): use 1 to %d characters from "
      "[A-Za-z0-9._-]",
      shown, id.size(), kMaxTransferIdLength));
}

absl::Status ValidateSha256(absl::string_view sha256) {
  if (sha256.size() == kSha256Size) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrFormat(
      "a SHA-256 must be %d raw bytes, got %d bytes", kSha256Size, sha256.size()));
}

std::string FormatMeta(uint64_t size, absl::string_view sha256) {
  return absl::StrCat(kMetaHeader, "\nsize ", size, "\nsha256 ", HexEncode(sha256), "\n");
}

struct Meta {
  uint64_t size = 0;
  std::string sha256;  // Raw.
};

// False if `text` is not a metadata file as FormatMeta writes it.
bool ParseMeta(absl::string_view text, Meta* meta) {
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
  if (lines.size() != 4 || lines[0] != kMetaHeader || !lines[3].empty()) return false;
  if (!absl::ConsumePrefix(&lines[1], "size ") ||
      !absl::SimpleAtoi(lines[1], &meta->size)) {
    return false;
  }
  absl::string_view hex = lines[2];
  if (!absl::ConsumePrefix(&hex, "sha256 ") || hex.size() != 2 * kSha256Size ||
      !std::all_of(hex.begin(), hex.end(), [](char c) {
        return absl::ascii_isdigit(static_cast<unsigned char>(c)) ||
               (c >= 'a' && c <= 'f');
      })) {
    return false;
  }
  meta->sha256 = absl::HexStringToBytes(hex);
  return true;
}

absl::Status MismatchError(const std::string& id, uint64_t have_size,
                           absl::string_view have_sha256, uint64_t size,
                           absl::string_view sha256) {
  return absl::FailedPreconditionError(absl::StrFormat(
      "transfer id %s already has an upload in progress for a file of %d bytes with "
      "SHA-256 %s, not %d bytes with SHA-256 %s: resume it with the same size and hash, "
      "or abort it first",
      id, have_size, HexEncode(have_sha256), size, HexEncode(sha256)));
}

absl::Status NoUploadError(const std::string& id) {
  return absl::FailedPreconditionError(absl::StrFormat(
      "no upload in progress under transfer id %s: call BeginUpload first (it also "
      "resumes an interrupted upload)",
      id));
}

// Runs `check` on the first kHeadBytes of the file at `path`.
absl::Status CheckHead(const std::string& path, uint64_t size,
                       const EvidenceStore::ContentCheck& check) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return OpenError(errno, path);
  ScopedFd closer(fd);
  std::string head(static_cast<size_t>(std::min<uint64_t>(size, EvidenceStore::kHeadBytes)),
                   '\0');
  COMITY_ASSIGN_OR_RETURN(size_t got, ReadFull(fd, head.data(), head.size(), 0, path));
  head.resize(got);
  return check(head, size);
}

}  // namespace

// ---------------------------------------------------------------------------
// Per-upload state

// Lock order: an Upload's mu before EvidenceStore::mu_.
struct EvidenceStore::Upload {
  // Kept on disk for BeginUpload to resume (the store closed, or forgot it).
  ~Upload() {
    if (file != nullptr) file->Suspend().IgnoreError();
  }

  absl::Mutex mu;
  // Finished, aborted or dropped: whoever waited for `mu` must look the
  // transfer id up again.
  bool closed ABSL_GUARDED_BY(mu) = false;
  // The fields below are set (by BeginUpload).
  bool loaded ABSL_GUARDED_BY(mu) = false;
  uint64_t size ABSL_GUARDED_BY(mu) = 0;
  std::string sha256 ABSL_GUARDED_BY(mu);  // Raw, as declared.
  // The object was already stored at BeginUpload: there is no partial file.
  bool already_stored ABSL_GUARDED_BY(mu) = false;
  // Writes ROOT/partial/ID.part, named ROOT/objects/../HEX once its size
  // and SHA-256 check out; null if already_stored.
  std::unique_ptr<VerifiedFileWriter> file ABSL_GUARDED_BY(mu);

  uint64_t received() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return file != nullptr ? file->size() : already_stored ? size : 0;
  }
};

// ---------------------------------------------------------------------------
// EvidenceStore

absl::StatusOr<std::unique_ptr<EvidenceStore>> EvidenceStore::Open(
    const std::string& root, uint64_t max_file_bytes) {
  if (root.empty()) {
    return absl::InvalidArgumentError("the evidence store needs a root directory");
  }
  std::string dir = root;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  COMITY_RETURN_IF_ERROR(MakeDir(dir));
  COMITY_RETURN_IF_ERROR(MakeDir(dir + "/objects"));
  COMITY_RETURN_IF_ERROR(MakeDir(dir + "/partial"));

  std::string lock_path = dir + "/LOCK";
  int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0) return OpenError(errno, lock_path);
  ScopedFd lock(lock_fd);
  int rc;
  do {
    rc = ::flock(lock_fd, LOCK_EX | LOCK_NB);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    if (errno == EWOULDBLOCK) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "evidence store %s is already open (%s is locked by this or another "
          "process): close the other EvidenceStore first",
          dir, lock_path));
    }
    return IoError(errno, absl::StrCat("cannot lock ", lock_path));
  }

  // Leftovers of imports interrupted by a crash.
  std::string partial_dir = dir + "/partial";
  DIR* listing = ::opendir(partial_dir.c_str());
  if (listing == nullptr) return OpenError(errno, partial_dir);
  std::vector<std::string> stale;
  while (struct dirent* entry = ::readdir(listing)) {
    if (absl::StartsWith(entry->d_name, kImportPrefix)) stale.push_back(entry->d_name);
  }
  ::closedir(listing);
  for (const std::string& name : stale) {
    COMITY_RETURN_IF_ERROR(RemoveIfExists(partial_dir + "/" + name).status());
  }

  return std::unique_ptr<EvidenceStore>(
      new EvidenceStore(std::move(dir), max_file_bytes, lock.Release()));
}

EvidenceStore::EvidenceStore(std::string root, uint64_t max_file_bytes, int lock_fd)
    : root_(std::move(root)),
      objects_dir_(root_ + "/objects"),
      partial_dir_(root_ + "/partial"),
      max_file_bytes_(max_file_bytes),
      lock_fd_(lock_fd) {}

EvidenceStore::~EvidenceStore() {
  // Partial uploads stay on disk; their descriptors close with uploads_.
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

std::string EvidenceStore::PartPath(const std::string& transfer_id) const {
  return absl::StrCat(partial_dir_, "/", transfer_id, ".part");
}

std::string EvidenceStore::MetaPath(const std::string& transfer_id) const {
  return absl::StrCat(partial_dir_, "/", transfer_id, ".meta");
}

std::string EvidenceStore::PathOf(absl::string_view sha256) const {
  if (sha256.size() != kSha256Size) return "";
  std::string hex = HexEncode(sha256);
  return absl::StrCat(objects_dir_, "/", hex.substr(0, 2), "/", hex);
}

bool EvidenceStore::Has(absl::string_view sha256) const {
  if (sha256.size() != kSha256Size) return false;
  struct stat st;
  return ::stat(PathOf(sha256).c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::shared_ptr<EvidenceStore::Upload> EvidenceStore::Find(const std::string& transfer_id,
                                                           bool create) {
  absl::MutexLock lock(&mu_);
  auto it = uploads_.find(transfer_id);
  if (it != uploads_.end()) return it->second;
  if (!create) return nullptr;
  auto upload = std::make_shared<Upload>();
  uploads_.emplace(transfer_id, upload);
  return upload;
}

void EvidenceStore::Forget(const std::string& transfer_id, Upload& upload) {
  upload.mu.AssertHeld();
  if (upload.file != nullptr) {
    upload.file->Suspend().IgnoreError();  // Kept for BeginUpload.
    upload.file.reset();
  }
  upload.closed = true;
  absl::MutexLock lock(&mu_);
  auto it = uploads_.find(transfer_id);
  if (it != uploads_.end() && it->second.get() == &upload) uploads_.erase(it);
}

absl::StatusOr<bool> EvidenceStore::RemovePartialFiles(const std::string& transfer_id) {
  COMITY_ASSIGN_OR_RETURN(bool had_part, RemoveIfExists(PartPath(transfer_id)));
  COMITY_ASSIGN_OR_RETURN(bool had_meta, RemoveIfExists(MetaPath(transfer_id)));
  return had_part || had_meta;
}

absl::StatusOr<uint64_t> EvidenceStore::BeginUpload(const std::string& transfer_id,
                                                    uint64_t size,
                                                    absl::string_view sha256) {
  COMITY_RETURN_IF_ERROR(ValidateTransferId(transfer_id));
  COMITY_RETURN_IF_ERROR(ValidateSha256(sha256));
  if (size > max_file_bytes_) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "transfer %s declares %d bytes, over this node's limit of %d bytes per evidence "
        "file",
        transfer_id, size, max_file_bytes_));
  }
  for (;;) {
    std::shared_ptr<Upload> upload = Find(transfer_id, /*create=*/true);
    absl::MutexLock lock(&upload->mu);
    if (upload->closed) continue;  // Finished or aborted meanwhile: look again.
    if (!upload->loaded) {
      absl::Status status = Load(transfer_id, size, sha256, *upload);
      if (!status.ok()) {
        Forget(transfer_id, *upload);
        return status;
      }
    } else if (upload->size != size || upload->sha256 != sha256) {
      return MismatchError(transfer_id, upload->size, upload->sha256, size, sha256);
    }
    return upload->received();
  }
}

absl::Status EvidenceStore::Load(const std::string& transfer_id, uint64_t size,
                                 absl::string_view sha256, Upload& upload) {
  upload.mu.AssertHeld();
  const std::string part_path = PartPath(transfer_id);
  const std::string meta_path = MetaPath(transfer_id);

  // A partial upload left on disk by an earlier store (or a crash)?
  bool resuming = false;
  absl::StatusOr<std::string> meta_text = ReadFile(meta_path);
  if (meta_text.ok()) {
    Meta meta;
    // An unreadable metadata file is discarded with its partial file below:
    // the cost is sending the file again.
    if (ParseMeta(*meta_text, &meta)) {
      if (meta.size != size || meta.sha256 != sha256) {
        return MismatchError(transfer_id, meta.size, meta.sha256, size, sha256);
      }
      resuming = true;
    }
  } else if (!absl::IsNotFound(meta_text.status())) {
    return meta_text.status();
  }

  if (Has(sha256)) {
    struct stat st;
    std::string path = PathOf(sha256);
    if (::stat(path.c_str(), &st) != 0) return OpenError(errno, path);
    if (static_cast<uint64_t>(st.st_size) != size) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "transfer %s declares %d bytes, but the file with SHA-256 %s is stored with %d "
          "bytes: the declared size is wrong",
          transfer_id, size, HexEncode(sha256), st.st_size));
    }
    // Nothing to receive. A partial upload of the same file (left by a crash
    // between the rename and the removal of its metadata, or sent in
    // parallel under another id and finished first) is of no further use.
    COMITY_RETURN_IF_ERROR(RemovePartialFiles(transfer_id).status());
    upload.already_stored = true;
  } else {
    VerifiedFileWriter::Options options;  // Mode 0600; an object is never replaced.
    options.temp_path = part_path;
    struct stat st;
    if (resuming && ::lstat(part_path.c_str(), &st) == 0) {
      // Rebuild the hash state from what is on disk (all of it, or nothing
      // if it is longer than declared: AppendChunk never writes that far).
      // Bytes damaged by the crash are caught by the SHA-256 check in
      // FinishUpload.
      const uint64_t held = static_cast<uint64_t>(st.st_size);
      COMITY_ASSIGN_OR_RETURN(upload.file,
                              VerifiedFileWriter::Resume(PathOf(sha256), part_path,
                                                         held <= size ? held : 0, options));
    } else {
      if (!resuming) {
        // The metadata goes first: a partial file without it is discarded.
        COMITY_RETURN_IF_ERROR(RemovePartialFiles(transfer_id).status());
        COMITY_RETURN_IF_ERROR(
            WriteFileAtomically(meta_path, FormatMeta(size, sha256), 0600));
      }
      COMITY_ASSIGN_OR_RETURN(upload.file,
                              VerifiedFileWriter::Create(PathOf(sha256), options));
      COMITY_RETURN_IF_ERROR(SyncDir(partial_dir_));
    }
  }
  upload.size = size;
  upload.sha256 = std::string(sha256);
  upload.loaded = true;
  return absl::OkStatus();
}

absl::Status EvidenceStore::AppendChunk(const std::string& transfer_id, uint64_t offset,
                                        absl::string_view data) {
  COMITY_RETURN_IF_ERROR(ValidateTransferId(transfer_id));
  for (;;) {
    std::shared_ptr<Upload> upload = Find(transfer_id, /*create=*/false);
    if (upload == nullptr) return NoUploadError(transfer_id);
    absl::MutexLock lock(&upload->mu);
    if (upload->closed) continue;  // Finished or aborted meanwhile: look again.
    if (!upload->loaded) return NoUploadError(transfer_id);
    const uint64_t received = upload->received();
    if (offset != received) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "transfer %s: chunk at offset %d, but %d bytes were received so far: send from "
          "offset %d",
          transfer_id, offset, received, received));
    }
    if (data.size() > upload->size - received) {
      return absl::InvalidArgumentError(
          absl::StrFormat("transfer %s: a chunk of %d bytes at offset %d goes past the "
                          "declared size of %d bytes",
                          transfer_id, data.size(), offset, upload->size));
    }
    if (data.empty()) return absl::OkStatus();
    absl::Status status = upload->file->Append(data);
    if (!status.ok()) {
      return absl::Status(status.code(),
                          absl::StrFormat("%s; %d bytes of transfer %s are stored: "
                                          "continue from offset %d",
                                          status.message(), upload->received(),
                                          transfer_id, upload->received()));
    }
    return absl::OkStatus();
  }
}

absl::StatusOr<std::string> EvidenceStore::FinishUpload(const std::string& transfer_id,
                                                        const ContentCheck& check) {
  COMITY_RETURN_IF_ERROR(ValidateTransferId(transfer_id));
  for (;;) {
    std::shared_ptr<Upload> upload = Find(transfer_id, /*create=*/false);
    if (upload == nullptr) return NoUploadError(transfer_id);
    absl::MutexLock lock(&upload->mu);
    if (upload->closed) continue;  // Finished or aborted meanwhile: look again.
    if (!upload->loaded) return NoUploadError(transfer_id);
    const std::string path = PathOf(upload->sha256);

    if (upload->already_stored) {
      Forget(transfer_id, *upload);
      if (!Has(upload->sha256)) {
        return absl::NotFoundError(
            absl::StrFormat("the file with SHA-256 %s was removed from the store during "
                            "transfer %s: call BeginUpload again",
                            HexEncode(upload->sha256), transfer_id));
      }
      if (check) COMITY_RETURN_IF_ERROR(CheckHead(path, upload->size, check));
      return path;
    }
    if (upload->received() < upload->size) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "transfer %s: received %d of %d bytes: send the rest from offset %d",
          transfer_id, upload->received(), upload->size, upload->received()));
    }

    // The upload ends here whatever happens: the partial file is checked
    // and named (size, SHA-256, `check`, fsync, rename, directory fsync),
    // or removed. Disk changes happen before Forget, while the transfer id
    // is still claimed.
    const uint64_t size = upload->size;
    VerifiedFileWriter::Vet vet;
    if (check) vet = [&](const std::string& temp) { return CheckHead(temp, size, check); };
    absl::Status status = upload->file->Commit(size, upload->sha256, vet).status();
    upload->file.reset();
    // Stored meanwhile under another transfer id: the same bytes.
    if (absl::IsAlreadyExists(status) && Has(upload->sha256)) status = absl::OkStatus();
    // The metadata goes with its partial file. One left behind (an error
    // here, or a crash) is removed by the next BeginUpload of the same file.
    if (RemoveIfExists(MetaPath(transfer_id)).ok()) (void)SyncDir(partial_dir_);
    Forget(transfer_id, *upload);
    if (absl::IsDataLoss(status)) {
      return absl::DataLossError(absl::StrFormat(
          "transfer %s: %s; the partial upload was discarded: send the file again from "
          "offset 0",
          transfer_id, status.message()));
    }
    COMITY_RETURN_IF_ERROR(status);
    return path;
  }
}

absl::Status EvidenceStore::AbortUpload(const std::string& transfer_id) {
  COMITY_RETURN_IF_ERROR(ValidateTransferId(transfer_id));
  // Claims the transfer id even when nothing is in memory, so that no
  // BeginUpload reads the files while they are removed.
  for (;;) {
    std::shared_ptr<Upload> upload = Find(transfer_id, /*create=*/true);
    absl::MutexLock lock(&upload->mu);
    if (upload->closed) continue;  // Finished or aborted meanwhile: look again.
    bool in_memory = upload->loaded;
    upload->file.reset();  // Removes the partial file it writes.
    absl::StatusOr<bool> removed = RemovePartialFiles(transfer_id);
    Forget(transfer_id, *upload);
    if (!removed.ok()) return removed.status();
    if (!in_memory && !*removed) {
      return absl::NotFoundError(
          absl::StrFormat("no upload under transfer id %s to abort", transfer_id));
    }
    return absl::OkStatus();
  }
}

absl::Status EvidenceStore::Install(const std::string& from, absl::string_view sha256) {
  std::string path = PathOf(sha256);
  std::string dir = DirName(path);
  if (::mkdir(dir.c_str(), 0700) == 0) {
    COMITY_RETURN_IF_ERROR(SyncDir(objects_dir_));
  } else if (errno != EEXIST) {
    return IoError(errno, absl::StrCat("cannot create directory ", dir));
  }
  // Replacing an object stored meanwhile is harmless: same bytes.
  if (::rename(from.c_str(), path.c_str()) != 0) {
    return IoError(errno, absl::StrCat("cannot rename ", from, " to ", path));
  }
  return SyncDir(dir);
}

absl::Status EvidenceStore::Read(
    absl::string_view sha256, uint64_t offset, size_t chunk_bytes,
    const std::function<absl::Status(absl::string_view)>& fn) const {
  COMITY_RETURN_IF_ERROR(ValidateSha256(sha256));
  if (chunk_bytes == 0 || chunk_bytes > kMaxReadChunkBytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("chunk size %d is out of range: use 1 to %d bytes", chunk_bytes,
                        kMaxReadChunkBytes));
  }
  std::string path = PathOf(sha256);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      return absl::NotFoundError(absl::StrFormat("no evidence file with SHA-256 %s in %s",
                                                 HexEncode(sha256), root_));
    }
    return OpenError(errno, path);
  }
  ScopedFd closer(fd);
  struct stat st;
  if (::fstat(fd, &st) != 0) return IoError(errno, absl::StrCat("cannot stat ", path));
  uint64_t size = static_cast<uint64_t>(st.st_size);
  if (offset > size) {
    return absl::OutOfRangeError(
        absl::StrFormat("offset %d is past the end of evidence file %s (%d bytes)",
                        offset, HexEncode(sha256), size));
  }
  if (offset == size) return absl::OkStatus();
  size_t buffer_bytes =
      static_cast<size_t>(std::min<uint64_t>(chunk_bytes, size - offset));
  std::unique_ptr<char[]> buffer(new char[buffer_bytes]);
  uint64_t pos = offset;
  for (;;) {
    COMITY_ASSIGN_OR_RETURN(size_t got,
                            ReadFull(fd, buffer.get(), buffer_bytes, pos, path));
    if (got == 0) break;
    COMITY_RETURN_IF_ERROR(fn(absl::string_view(buffer.get(), got)));
    pos += got;
    if (got < buffer_bytes) break;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::pair<std::string, uint64_t>> EvidenceStore::ImportFile(
    const std::string& path) {
  int in_fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (in_fd < 0) return OpenError(errno, path);
  ScopedFd in(in_fd);
  return ImportFrom(in_fd, path);
}

absl::StatusOr<std::pair<std::string, uint64_t>> EvidenceStore::ImportFrom(
    int in_fd, const std::string& path, const ContentCheck& check) {
  struct stat st;
  if (::fstat(in_fd, &st) != 0) return IoError(errno, absl::StrCat("cannot stat ", path));
  if (S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is a directory: import its files one by one"));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, " is not a regular file (a device, FIFO or socket): evidence is a file"));
  }
  auto too_big = [&](absl::string_view how_many, uint64_t bytes) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "%s has %s%d bytes, over this node's limit of %d bytes per evidence file", path,
        how_many, bytes, max_file_bytes_));
  };
  if (static_cast<uint64_t>(st.st_size) > max_file_bytes_) {
    return too_big("", static_cast<uint64_t>(st.st_size));
  }

  std::string tmp = absl::StrCat(partial_dir_, "/", kImportPrefix, RandomUuid());
  int out_fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (out_fd < 0) return OpenError(errno, tmp);
  ScopedFd out(out_fd);
  bool keep_tmp = false;
  struct RemoveTmp {
    const std::string& tmp;
    const bool& keep;
    ~RemoveTmp() {
      if (!keep) ::unlink(tmp.c_str());
    }
  } remove_tmp{tmp, keep_tmp};

  Sha256Stream hash;
  std::unique_ptr<char[]> buffer(new char[kIoBufferBytes]);
  std::string head;
  uint64_t total = 0;
  for (;;) {
    ssize_t n = ::read(in_fd, buffer.get(), kIoBufferBytes);
    if (n < 0) {
      if (errno == EINTR) continue;
      return IoError(errno, absl::StrCat("cannot read ", path));
    }
    if (n == 0) break;
    total += static_cast<uint64_t>(n);
    if (total > max_file_bytes_) return too_big("at least ", total);
    absl::string_view piece(buffer.get(), static_cast<size_t>(n));
    if (head.size() < kHeadBytes) {
      absl::string_view more = piece.substr(0, kHeadBytes - head.size());
      head.append(more.data(), more.size());
    }
    hash.Update(piece);
    COMITY_RETURN_IF_ERROR(WriteAll(out_fd, piece, tmp, nullptr));
    // Write back as it goes (see AppendChunk).
    if (total % (uint64_t{32} << 20) < static_cast<uint64_t>(n)) {
      ::sync_file_range(out_fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    }
  }
  if (::fsync(out_fd) != 0) return IoError(errno, absl::StrCat("cannot sync ", tmp));
  if (out.Close() != 0) return IoError(errno, absl::StrCat("cannot close ", tmp));

  if (check) COMITY_RETURN_IF_ERROR(check(head, total));
  std::string digest = hash.Finish();
  if (!Has(digest)) {
    COMITY_RETURN_IF_ERROR(Install(tmp, digest));
    keep_tmp = true;  // Renamed away.
  }
  return std::make_pair(std::move(digest), total);
}

}  // namespace comity
