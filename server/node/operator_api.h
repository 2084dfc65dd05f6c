// What this node's operators and auditors may ask of it (OperatorService and
// AuditService, proto/comity/v1/operator.proto), transport-free: every call
// is authenticated and its role checked by the intake (a denial is audited),
// then handed to one duty. The gRPC adapter only converts.
//
//   node->operator_api().Submit(call, draft, [](absl::StatusOr<RequestView> view) { ...
//   });
#ifndef COMITY_SERVER_NODE_OPERATOR_API_H_
#define COMITY_SERVER_NODE_OPERATOR_API_H_

#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "comity/v1/audit.pb.h"
#include "comity/v1/operator.pb.h"
#include "comity/v1/record.pb.h"
#include "server/audit/verifier.h"
#include "server/node/backup.h"
#include "server/node/case_book.h"
#include "server/node/custody_export.h"
#include "server/node/deadline_watch.h"
#include "server/node/evidence_exchange.h"
#include "server/node/request_intake.h"
#include "server/store/store.h"

namespace comity {

class Node;

// Records as an operator sees them, with what it takes to verify them.
struct RequestView {
  std::vector<v1::RequestRecord> records;
  // The public keys that signed the records' envelopes.
  std::vector<v1::PublicKey> signer_keys;
  // Evidence files of the records' responses held on this node.
  std::vector<v1::StoredEvidence> stored_evidence;
  // Evidence files of the records' responses still to fetch.
  std::vector<v1::PendingEvidenceStatus> pending_evidence;
  // Every deadline of the records, met or not (EveryDeadline).
  std::vector<v1::CaseDeadline> deadlines;
};

// A page of the log's entries, with its size when read.
struct AuditEntriesPage {
  std::vector<std::string> entries;
  uint64_t tree_size = 0;
  std::string next_page_token;  // Empty on the last page.
};

// A page of the signed heads of the log, with this node's keys.
struct TreeHeadsPage {
  std::vector<v1::SignedEnvelope> heads;
  std::vector<v1::PublicKey> keys;
  std::string next_page_token;  // Empty on the last page.
};

// A proof from the log (AuditService.GetProof).
struct AuditProof {
  uint64_t tree_size = 0;
  std::string root;
  std::string old_root;  // Consistency proofs.
  std::vector<std::string> hashes;
  std::string entry;  // Inclusion proofs: the entry proven.
};

// A streamed export of the log, in messages of at most about `max_bytes`:
// the first bundle (party, keys, time), then the signed heads a page at a
// time, then the entries (docs/operator_api.md).
struct AuditExportStream {
  v1::AuditBundle first;
  uint64_t size = 0;  // Entries exported; heads beyond it are left out.
  size_t max_bytes = 0;
  // Up to `limit` serialized signed heads with tree_size in [from_size,
  // size], by size.
  std::function<absl::StatusOr<std::vector<StoredTreeHead>>(uint64_t from_size,
                                                            uint64_t limit)>
      read_heads;
  // Up to `limit` entries from index `from`.
  std::function<absl::StatusOr<std::vector<std::string>>(uint64_t from, uint64_t limit)>
      read;
};

// An operator's upload stream (OperatorService.UploadEvidence): an
// EvidenceIntake::Upload whose refusals are logged and audited as the
// call's. Not thread-safe.
class EvidenceUploadStream {
 public:
  absl::Status Append(absl::string_view data);
  // Complete: stored, staged, audited. Incomplete: the bytes held so far
  // count, and the upload can resume.
  bool complete() const { return upload_->received() >= size_; }
  uint64_t received() const { return upload_->received(); }
  absl::StatusOr<v1::EvidenceFile> Finish();

 private:
  friend class OperatorApi;
  EvidenceUploadStream(Node* node, CallInfo call, std::string operator_name,
                       std::unique_ptr<EvidenceIntake::Upload> upload, uint64_t size)
      : node_(node),
        call_(std::move(call)),
        operator_(std::move(operator_name)),
        upload_(std::move(upload)),
        size_(size) {}
  absl::Status Recorded(absl::Status st);
  Node* const node_;
  const CallInfo call_;
  const std::string operator_;
  const std::unique_ptr<EvidenceIntake::Upload> upload_;
  const uint64_t size_;
};

// Thread-safe.
class OperatorApi {
 public:
  using ViewDone = std::function<void(absl::StatusOr<RequestView>)>;

  explicit OperatorApi(Node* node) : node_(node) {}

  // Role submitter. Calls `done` (on the outbox lane, or inline on an error)
  // with the record after the first delivery attempt.
  void Submit(const CallInfo& call, v1::RequestBody draft, ViewDone done);
  // Role approver: two-person approval, then as Submit.
  void Approve(const CallInfo& call, const std::string& request_id, ViewDone done);
  // Role reviewer (a received request) or submitter (a sent one); a
  // proposal waits for its first delivery attempt. `node_side_paths`
  // (DecideRequest.evidence_paths) are always refused: the node opens no
  // path an operator names.
  absl::StatusOr<v1::RequestRecord> Decide(const CallInfo& call,
                                           const std::string& request_id,
                                           const CaseBook::Decision& decision,
                                           int node_side_paths = 0);
  // Role reviewer: evidence from the operator (EvidenceIntake). Begin
  // returns the offset to send from.
  absl::StatusOr<uint64_t> BeginEvidenceUpload(const CallInfo& call,
                                               const std::string& request_id,
                                               const std::string& name, uint64_t size,
                                               const std::string& sha256);
  absl::StatusOr<std::unique_ptr<EvidenceUploadStream>> OpenEvidenceUpload(
      const CallInfo& call, const std::string& request_id, const std::string& sha256,
      uint64_t offset);
  absl::StatusOr<v1::EvidenceFile> ImportEvidence(const CallInfo& call,
                                                  const std::string& request_id,
                                                  const std::string& name);
  // Role submitter: fetch the files of a sent request's responses again,
  // attempts counted from 0 (after the node gave up). Returns how many.
  absl::StatusOr<int> RetryEvidence(const CallInfo& call, const std::string& request_id);
  // Any role.
  absl::StatusOr<std::vector<v1::PeerStatus>> ListPeers(const CallInfo& call);
  absl::StatusOr<std::vector<v1::KeyStatus>> ListKeys(const CallInfo& call);
  // One page of late and expiring deadlines (DeadlineWatch::Overdue),
  // about limits.max_message_bytes at most.
  absl::StatusOr<OverduePage> ListOverdue(const CallInfo& call, int limit,
                                          const std::string& page_token);
  // One page of requests, newest first: at most `limit` records (0: 100;
  // at most 1000) and about limits.max_message_bytes of them, from
  // `page_token` (a RecordPage::next_cursor; empty: the newest).
  // InvalidArgument for a malformed token.
  absl::StatusOr<RecordPage> ListRequests(const CallInfo& call, v1::Direction direction,
                                          int limit, const std::string& page_token);
  absl::StatusOr<RequestView> GetRequest(const CallInfo& call,
                                         const std::string& request_id, bool chain);
  absl::StatusOr<std::unique_ptr<EvidenceReader>> ExportEvidence(
      const CallInfo& call, const std::string& request_id, const std::string& sha256,
      uint64_t offset, bool allow_tlp_red);
  // Any role: the custody package of a request (CustodyExport).
  absl::StatusOr<CustodyExport::Package> ExportCustodyPackage(
      const CallInfo& call, const std::string& request_id, const std::string& destination,
      const std::vector<std::string>& files, bool allow_tlp_red);
  // Role admin.
  absl::StatusOr<Backup::Copy> TakeBackup(const CallInfo& call);

  // AuditService: role auditor. Lists come in pages of at most about
  // limits.max_message_bytes (docs/operator_api.md); a malformed
  // `page_token` is InvalidArgument.
  //
  // Entries matching `filter` (its limit: 0 or at most kMaxAuditEntriesPage)
  // from `page_token`, else from filter.from_index.
  absl::StatusOr<AuditEntriesPage> AuditEntries(const CallInfo& call, AuditFilter filter,
                                                const std::string& page_token);
  // Signed heads by tree size: at most `limit` (0 or at most
  // kMaxTreeHeadsPage) from `page_token` (empty: the smallest).
  absl::StatusOr<TreeHeadsPage> AuditTreeHeads(const CallInfo& call, int limit,
                                               const std::string& page_token);
  static constexpr uint64_t kMaxAuditEntriesPage = 10000;
  static constexpr int kMaxTreeHeadsPage = 1000;
  absl::StatusOr<v1::SignedEnvelope> AuditSignHead(const CallInfo& call);
  absl::StatusOr<AuditProof> AuditGetProof(const CallInfo& call, uint64_t index,
                                           uint64_t tree_size, bool consistency,
                                           uint64_t old_size);
  absl::StatusOr<VerifyReport> AuditVerify(const CallInfo& call);
  absl::StatusOr<AuditExportStream> AuditExport(const CallInfo& call);

 private:
  // Admits the call (certificate and one of `roles`), runs `fn(operator)`,
  // and logs and audits its refusal (docs/refusals.md).
  template <typename T, typename Fn>
  T Call(const CallInfo& call, const char* method, std::initializer_list<const char*> roles,
         Fn fn);
  // `done`, after recording a refusal of `operator_name`'s call.
  ViewDone Recording(const CallInfo& call, const char* method, const std::string& operator_name,
                     ViewDone done);
  // The records' view: signer keys and held evidence added.
  RequestView ViewOf(std::vector<v1::RequestRecord> records) const;
  // After Submit or Approve stored the request `key`: `done` once the
  // outbox tried it.
  void AwaitFirstAttempt(const RecordKey& key, ViewDone done);

  Node* const node_;
};

}  // namespace comity

#endif  // COMITY_SERVER_NODE_OPERATOR_API_H_
