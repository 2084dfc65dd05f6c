#include "server/node/evidence_intake.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/core/case_rules.h"
#include "server/crypto/key_material.h"
#include "server/node/case_records.h"
#include "server/util/hex.h"
#include "server/util/log.h"
#include "server/util/posix_file.h"
#include "server/util/status_macros.h"

namespace comity {
namespace {

constexpr size_t kMaxNameBytes = 255;
// Uploads begun and not finished that the node remembers; the oldest is
// forgotten past this (one of them; its bytes stay, and BeginUpload picks
// them up again).
constexpr size_t kMaxBegun = 256;

// The store's transfer id of an operator's upload of `sha256`.
std::string TransferId(const std::string& sha256) {
  return absl::StrCat("op-", HexEncode(sha256));
}

}  // namespace

EvidenceIntake::EvidenceIntake(const NodeContext* ctx, EvidenceStore* files)
    : ctx_(ctx), files_(files) {}

uint64_t EvidenceIntake::max_chunk_bytes() const {
  return std::min<uint64_t>(kMaxChunkBytes, ctx_->config().limits().max_message_bytes() / 2);
}

absl::Status EvidenceIntake::CheckContent(absl::string_view head, uint64_t size) {
  (void)size;
  if (HoldsPrivateKey(head)) {
    return absl::InvalidArgumentError(
        "the file holds a private key (a PEM \"PRIVATE KEY\" block, or a DER key): "
        "evidence never carries key material; remove the key from the file");
  }
  return absl::OkStatus();
}

absl::Status EvidenceIntake::CheckRequest(const std::string& request_id) const {
  COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> records,
                          ctx_->store().requests().Get(request_id));
  const v1::RequestRecord* row = RowOf(records, v1::INCOMING);
  if (row == nullptr) {
    return absl::NotFoundError(absl::StrCat(
        "this node received no request ", request_id.substr(0, 64),
        ": evidence goes with a response to a request received (comity list --received)"));
  }
  if (!NextCaseState(row->case_state(), v1::RESPOND, false).ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "request ", request_id, " is ", v1::CaseState_Name(row->case_state()),
        ": it takes no response, so no evidence"));
  }
  return absl::OkStatus();
}

absl::Status EvidenceIntake::CheckName(const std::string& name) const {
  if (name.empty() || name.size() > kMaxNameBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "an evidence file's name has 1 to ", kMaxNameBytes, " bytes (got ", name.size(), ")"));
  }
  if (name == "." || name == ".." || name.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("evidence file name '", name.substr(0, 64),
                     "' is not a plain file name: no '/', not '.' or '..'"));
  }
  for (unsigned char c : name) {
    if (c < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(
          "an evidence file's name may not hold control characters");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> EvidenceIntake::BeginUpload(const std::string& operator_name,
                                                     const std::string& request_id,
                                                     const std::string& name, uint64_t size,
                                                     const std::string& sha256) {
  (void)operator_name;
  COMITY_RETURN_IF_ERROR(CheckName(name));
  if (sha256.size() != 32) {
    return absl::InvalidArgumentError(
        absl::StrCat("sha256 must be the 32 raw bytes of the file's SHA-256, not ",
                     sha256.size(), " bytes"));
  }
  if (size == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " is empty: an evidence file has at least one byte"));
  }
  const uint64_t max = ctx_->config().evidence().max_file_bytes();
  if (size > max) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "%s has %d bytes, over this node's limit of %d bytes per evidence file "
        "(evidence.max_file_bytes)",
        name, size, max));
  }
  COMITY_RETURN_IF_ERROR(CheckRequest(request_id));
  COMITY_ASSIGN_OR_RETURN(uint64_t offset,
                          files_->BeginUpload(TransferId(sha256), size, sha256));
  v1::EvidenceFile file;
  file.set_name(name);
  file.set_sha256(sha256);
  file.set_size(size);
  absl::MutexLock lock(&mu_);
  if (begun_.size() >= kMaxBegun) begun_.erase(begun_.begin());
  begun_[{request_id, sha256}] = std::move(file);
  return offset;
}

absl::StatusOr<std::unique_ptr<EvidenceIntake::Upload>> EvidenceIntake::OpenUpload(
    const std::string& operator_name, const std::string& request_id,
    const std::string& sha256, uint64_t offset) {
  v1::EvidenceFile file;
  {
    absl::MutexLock lock(&mu_);
    auto it = begun_.find({request_id, sha256});
    if (it == begun_.end()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "no upload of that file for request ", request_id.substr(0, 64),
          " was begun: call BeginEvidenceUpload first (it says from which offset to send)"));
    }
    file = it->second;
  }
  // Re-registers the transfer if the store forgot it (e.g. after a failed
  // write), and tells where it stands.
  COMITY_ASSIGN_OR_RETURN(uint64_t held,
                          files_->BeginUpload(TransferId(sha256), file.size(), sha256));
  if (offset != held) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "the upload starts at offset %d, but the node holds %d bytes of it: send from "
        "offset %d",
        offset, held, held));
  }
  return std::unique_ptr<Upload>(
      new Upload(this, operator_name, request_id, std::move(file), offset));
}

absl::Status EvidenceIntake::Upload::Append(absl::string_view data) {
  if (data.size() > intake_->max_chunk_bytes()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("an upload message carries at most ", intake_->max_chunk_bytes(),
                     " bytes, not ", data.size()));
  }
  COMITY_RETURN_IF_ERROR(
      intake_->files_->AppendChunk(TransferId(file_.sha256()), offset_, data));
  offset_ += data.size();
  return absl::OkStatus();
}

absl::StatusOr<v1::EvidenceFile> EvidenceIntake::Upload::Finish() {
  if (offset_ < file_.size()) {
    return absl::FailedPreconditionError(
        absl::StrFormat("%s: %d of %d bytes received; send the rest from offset %d",
                        file_.name(), offset_, file_.size(), offset_));
  }
  COMITY_RETURN_IF_ERROR(
      intake_->files_->FinishUpload(TransferId(file_.sha256()), &CheckContent).status());
  {
    absl::MutexLock lock(&intake_->mu_);
    intake_->begun_.erase({request_id_, file_.sha256()});
  }
  return intake_->Stage(operator_, request_id_, file_, "uploaded");
}

absl::StatusOr<v1::EvidenceFile> EvidenceIntake::Import(const std::string& operator_name,
                                                        const std::string& request_id,
                                                        const std::string& name) {
  const std::string& dir = ctx_->config().evidence().import_dir();
  if (dir.empty()) {
    return absl::FailedPreconditionError(
        "this node has no evidence.import_dir: upload the file instead (comity respond "
        "--file PATH reads it on your machine)");
  }
  COMITY_RETURN_IF_ERROR(CheckName(name));
  COMITY_RETURN_IF_ERROR(CheckRequest(request_id));
  int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return OpenError(errno, dir);
  ScopedFd dir_closer(dir_fd);
  // Not following a link, and not blocking on a FIFO or a device.
  int fd = ::openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY |
                                              O_CLOEXEC);
  if (fd < 0) {
    if (errno == ELOOP) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, " in the import directory is a symbolic link: only regular files are "
                "imported; copy the file itself there"));
    }
    return OpenError(errno, absl::StrCat(dir, "/", name));
  }
  ScopedFd closer(fd);
  struct stat st;
  if (::fstat(fd, &st) != 0) return OpenError(errno, name);
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, " in the import directory is not a regular file (a directory, device, FIFO "
              "or socket): only regular files are imported"));
  }
  if (st.st_nlink > 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, " in the import directory has other hard links: it may be a file of the "
              "node's own; copy it there instead of linking"));
  }
  if (st.st_size == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " is empty: an evidence file has at least one byte"));
  }
  // Back to blocking reads for the copy.
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  auto imported = files_->ImportFrom(fd, name, &CheckContent);
  if (!imported.ok()) {
    return absl::Status(imported.status().code(),
                        absl::StrCat("importing ", name, ": ", imported.status().message()));
  }
  v1::EvidenceFile file;
  file.set_name(name);
  file.set_sha256(imported->first);
  file.set_size(imported->second);
  return Stage(operator_name, request_id, file, "imported from evidence.import_dir");
}

absl::StatusOr<v1::EvidenceFile> EvidenceIntake::Stage(const std::string& operator_name,
                                                       const std::string& request_id,
                                                       const v1::EvidenceFile& file,
                                                       const char* how) {
  COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> records,
                          ctx_->store().requests().Get(request_id));
  const v1::RequestRecord* row = RowOf(records, v1::INCOMING);
  if (row == nullptr) return absl::NotFoundError("the request is gone");
  COMITY_ASSIGN_OR_RETURN(v1::RequestBody body, BodyOf(*row));
  StagedEvidence staged;
  staged.request_id = request_id;
  staged.sha256 = file.sha256();
  staged.name = file.name();
  staged.size = file.size();
  staged.staged_by = operator_name;
  COMITY_RETURN_IF_ERROR(ctx_->store().cases().StageEvidence(
      staged, ctx_->Now(), [&](AuditWriter& w) {
        v1::AuditEntry e = ctx_->Event(v1::EVIDENCE_IMPORTED, "operator:" + operator_name,
                                       request_id, body.requesting_party());
        e.add_hashes(file.sha256());
        e.set_detail(absl::StrCat(file.name(), ", ", file.size(), " bytes, ", how,
                                  ", SHA-256 verified"));
        return w.Append(&e).status();
      }));
  LogEvent(LogLevel::kInfo, "evidence_staged",
           {{"request_id", request_id},
            {"file", file.name()},
            {"bytes", absl::StrCat(file.size())},
            {"operator", operator_name}});
  return file;
}

absl::StatusOr<std::vector<v1::EvidenceFile>> EvidenceIntake::Staged(
    const std::string& request_id, const std::vector<std::string>& sha256s) {
  if (sha256s.empty()) return std::vector<v1::EvidenceFile>{};
  COMITY_ASSIGN_OR_RETURN(std::vector<StagedEvidence> staged,
                          ctx_->store().cases().StagedEvidenceOf(request_id));
  std::vector<v1::EvidenceFile> out;
  for (const std::string& sha : sha256s) {
    const StagedEvidence* found = nullptr;
    for (const StagedEvidence& s : staged) {
      if (s.sha256 == sha) found = &s;
    }
    if (found == nullptr || !files_->Has(sha)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "no evidence file with SHA-256 ", HexEncode(sha).substr(0, 16),
          " is staged for request ", request_id.substr(0, 64),
          ": upload it first (comity respond --file PATH uploads and lists it)"));
    }
    v1::EvidenceFile f;
    f.set_name(found->name);
    f.set_sha256(found->sha256);
    f.set_size(found->size);
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace comity
