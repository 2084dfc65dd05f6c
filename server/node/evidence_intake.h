// Evidence files from this node's operators (docs/evidence.md, "Files from
// the operator"): uploaded over the operator channel, or imported by name
// from the configured evidence.import_dir, checked, stored in the evidence
// store and staged for a response to a request this node received. A
// RESPOND lists only staged files: no operator action makes the node open a
// path of its own choosing.
//
//   COMITY_ASSIGN_OR_RETURN(uint64_t offset,
//                           intake.BeginUpload("bob", id, "logs.tar", size, sha256));
//   COMITY_ASSIGN_OR_RETURN(auto upload, intake.OpenUpload("bob", id, sha256, offset));
//   COMITY_RETURN_IF_ERROR(upload->Append(chunk));  // ... to the end
//   COMITY_ASSIGN_OR_RETURN(v1::EvidenceFile staged, upload->Finish());
#ifndef COMITY_SERVER_NODE_EVIDENCE_INTAKE_H_
#define COMITY_SERVER_NODE_EVIDENCE_INTAKE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "comity/v1/case.pb.h"
#include "server/evidence/evidence_store.h"
#include "server/node/node_context.h"

namespace comity {

// Thread-safe.
class EvidenceIntake {
 public:
  // Largest piece of an upload in one message.
  static constexpr uint64_t kMaxChunkBytes = uint64_t{1} << 20;

  EvidenceIntake(const NodeContext* ctx, EvidenceStore* files);

  // Largest piece of an upload this node takes in one message: within its
  // limits.max_message_bytes, at most kMaxChunkBytes.
  uint64_t max_chunk_bytes() const;

  // One upload in progress, from the offset BeginUpload returned. Not
  // thread-safe; one per stream.
  class Upload {
   public:
    // Appends the next bytes; written through to the partial file.
    absl::Status Append(absl::string_view data);
    // Bytes of the file the node holds now, of size().
    uint64_t received() const { return offset_; }
    uint64_t size() const { return file_.size(); }
    // Once every byte is in: verified (SHA-256, content), stored, staged
    // and audited (EVIDENCE_IMPORTED). FailedPrecondition while bytes are
    // missing (the upload can resume); a refusal of the content discards
    // it.
    absl::StatusOr<v1::EvidenceFile> Finish();

   private:
    friend class EvidenceIntake;
    Upload(EvidenceIntake* intake, std::string operator_name, std::string request_id,
           v1::EvidenceFile file, uint64_t offset)
        : intake_(intake),
          operator_(std::move(operator_name)),
          request_id_(std::move(request_id)),
          file_(std::move(file)),
          offset_(offset) {}
    EvidenceIntake* const intake_;
    const std::string operator_;
    const std::string request_id_;
    const v1::EvidenceFile file_;
    uint64_t offset_;
  };

  // Starts or resumes the upload of a file `name` of `size` bytes and
  // SHA-256 `sha256` for a response to `request_id`; returns the offset to
  // send from (`size` if the node holds the file). Errors name the rule:
  // NotFound / FailedPrecondition for a request this node did not receive
  // or whose case is closed; InvalidArgument for a bad name, size or hash;
  // ResourceExhausted over evidence.max_file_bytes.
  absl::StatusOr<uint64_t> BeginUpload(const std::string& operator_name,
                                       const std::string& request_id,
                                       const std::string& name, uint64_t size,
                                       const std::string& sha256);
  // The upload BeginUpload started, continued from `offset`;
  // FailedPrecondition without a BeginUpload, or at another offset (the
  // message names the right one).
  absl::StatusOr<std::unique_ptr<Upload>> OpenUpload(const std::string& operator_name,
                                                     const std::string& request_id,
                                                     const std::string& sha256,
                                                     uint64_t offset);

  // Stages the regular file `name` of evidence.import_dir for a response
  // to `request_id`: one path component, opened without following links,
  // not hard-linked elsewhere; FailedPrecondition if no import_dir is
  // configured. Same checks and entry as an upload.
  absl::StatusOr<v1::EvidenceFile> Import(const std::string& operator_name,
                                          const std::string& request_id,
                                          const std::string& name);

  // The staged files of `request_id` with these SHA-256s (raw), in that
  // order; InvalidArgument naming the first that is not staged for it.
  absl::StatusOr<std::vector<v1::EvidenceFile>> Staged(
      const std::string& request_id, const std::vector<std::string>& sha256s);

  // Refuses content that must never leave the node: a private key (PEM or
  // DER). The EvidenceStore::ContentCheck of every staged file.
  static absl::Status CheckContent(absl::string_view head, uint64_t size);

 private:
  // The request may take a response: received here, case not final.
  absl::Status CheckRequest(const std::string& request_id) const;
  absl::Status CheckName(const std::string& name) const;
  // Stores the staging row and its entry; `how`: "uploaded", "imported".
  absl::StatusOr<v1::EvidenceFile> Stage(const std::string& operator_name,
                                         const std::string& request_id,
                                         const v1::EvidenceFile& file, const char* how);

  const NodeContext* const ctx_;
  EvidenceStore* const files_;
  absl::Mutex mu_;
  // Begun uploads: (request id, SHA-256) to the file's name and size.
  std::map<std::pair<std::string, std::string>, v1::EvidenceFile> begun_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace comity

#endif  // COMITY_SERVER_NODE_EVIDENCE_INTAKE_H_
