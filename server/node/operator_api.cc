#include "server/node/operator_api.h"

#include <algorithm>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "server/core/deadlines.h"
#include "server/node/case_records.h"
#include "server/node/node.h"
#include "server/util/status_macros.h"

namespace comity {
namespace {

// Every operator role: calls any operator may make.
#define COMITY_ANY_ROLE \
  { "submitter", "reviewer", "approver", "auditor", "admin" }

constexpr int kDefaultListLimit = 100;
constexpr int kMaxListLimit = 1000;

// Page tokens of the audit lists: "<kind>:<index or size where the next
// page starts>" (e1: entries, h1: signed heads).
std::string EncodeAuditToken(absl::string_view kind, uint64_t next) {
  return absl::StrCat(kind, ":", next);
}

absl::StatusOr<uint64_t> DecodeAuditToken(const std::string& token,
                                          absl::string_view kind) {
  uint64_t next = 0;
  absl::string_view rest(token);
  if (!absl::ConsumePrefix(&rest, kind) || !absl::ConsumePrefix(&rest, ":") ||
      !absl::SimpleAtoi(rest, &next)) {
    return absl::InvalidArgumentError(
        "not a page token of this list: pass the next_page_token a previous page "
        "returned "
        "(with the same filters)");
  }
  return next;
}

}  // namespace

RequestView OperatorApi::ViewOf(std::vector<v1::RequestRecord> records) const {
  RequestView view;
  std::set<std::pair<std::string, std::string>> seen;
  auto add = [&](const v1::SignedEnvelope& env) {
    if (env.signer_party().empty()) return;
    if (!seen.insert({env.signer_party(), env.key_id()}).second) return;
    const VerifyingKey* key = node_->key_ring().Find(env.signer_party(), env.key_id());
    if (key == nullptr) return;
    v1::PublicKey pk;
    pk.set_party(env.signer_party());
    pk.set_key_id(env.key_id());
    pk.set_ed25519_public_key(key->raw());
    view.signer_keys.push_back(std::move(pk));
  };
  for (const v1::RequestRecord& r : records) {
    add(r.request());
    if (r.has_receipt()) {
      add(r.receipt());
      // A version 3 receipt has no key of its own: its tree head's proves it.
      v1::Receipt receipt;
      if (r.receipt().key_id().empty() && receipt.ParseFromString(r.receipt().payload())) {
        add(receipt.tree_head());
      }
    }
    for (const v1::SignedEnvelope& t : r.transitions()) add(t);
  }
  const absl::Time now = node_->context().Now();
  for (const v1::RequestRecord& r : records) {
    for (v1::CaseDeadline& d :
         EveryDeadline(r, node_->context().config().service_levels(), now)) {
      view.deadlines.push_back(std::move(d));
    }
  }
  view.stored_evidence = node_->evidence().HeldOf(records);
  view.pending_evidence = node_->evidence().PendingOf(records);
  view.records = std::move(records);
  return view;
}

void OperatorApi::AwaitFirstAttempt(const RecordKey& key, ViewDone done) {
  node_->outbox().AwaitAttempt(
      key.requested_party, "r:" + key.request_id,
      [this, done = std::move(done)](absl::StatusOr<v1::RequestRecord> after) {
        if (!after.ok()) {
          done(after.status());
          return;
        }
        done(ViewOf({*std::move(after)}));
      });
}

template <typename T, typename Fn>
T OperatorApi::Call(const CallInfo& call, const char* method,
                    std::initializer_list<const char*> roles, Fn fn) {
  absl::StatusOr<CertIdentity> op = node_->intake().AdmitOperator(call, method, roles);
  if (!op.ok()) return op.status();
  T result = fn(*op);
  if (!result.ok()) {
    node_->intake().RecordRefusal(call, "operator:" + op->operator_name, method, "",
                                  result.status());
  }
  return result;
}

OperatorApi::ViewDone OperatorApi::Recording(const CallInfo& call, const char* method,
                                             const std::string& operator_name, ViewDone done) {
  return [this, call, method, operator_name,
          done = std::move(done)](absl::StatusOr<RequestView> view) {
    if (!view.ok()) {
      node_->intake().RecordRefusal(call, "operator:" + operator_name, method, "",
                                    view.status());
    }
    done(std::move(view));
  };
}

void OperatorApi::Submit(const CallInfo& call, v1::RequestBody draft, ViewDone done) {
  auto op = node_->intake().AdmitOperator(call, "SubmitRequest", {"submitter"});
  if (!op.ok()) return done(op.status());
  done = Recording(call, "SubmitRequest", op->operator_name, std::move(done));
  RecordKey key;
  absl::StatusOr<v1::RequestRecord> stored =
      node_->submission().Submit(op->operator_name, std::move(draft), &key);
  if (!stored.ok()) return done(stored.status());
  if (stored->state() == v1::AWAITING_APPROVAL) return done(ViewOf({*std::move(stored)}));
  AwaitFirstAttempt(key, std::move(done));
}

void OperatorApi::Approve(const CallInfo& call, const std::string& request_id, ViewDone done) {
  auto op = node_->intake().AdmitOperator(call, "ApproveRequest", {"approver"});
  if (!op.ok()) return done(op.status());
  done = Recording(call, "ApproveRequest", op->operator_name, std::move(done));
  RecordKey key;
  absl::StatusOr<v1::RequestRecord> approved =
      node_->submission().Approve(op->operator_name, request_id, &key);
  if (!approved.ok()) return done(approved.status());
  AwaitFirstAttempt(key, std::move(done));
}

absl::StatusOr<v1::RequestRecord> OperatorApi::Decide(const CallInfo& call,
                                                      const std::string& request_id,
                                                      const CaseBook::Decision& decision,
                                                      int node_side_paths) {
  return Call<absl::StatusOr<v1::RequestRecord>>(
      call, "DecideRequest", {"reviewer", "submitter"},
      [&](const CertIdentity& op) -> absl::StatusOr<v1::RequestRecord> {
        if (node_side_paths > 0) {
          return absl::InvalidArgumentError(
              "evidence_paths is no longer accepted: the node opens no path an operator "
              "names. Upload the file from your machine (comity respond --file PATH), or "
              "stage one of the node's evidence.import_dir (comity respond --import NAME)");
        }
        COMITY_ASSIGN_OR_RETURN(CaseBook::Acted acted,
                                node_->cases().Act(op, request_id, decision));
        if (acted.proposal_to.empty()) return std::move(acted.record);
        // A proposal: the record after its first delivery attempt (or as
        // queued, if the requested party is backing off).
        absl::Notification attempted;
        absl::StatusOr<v1::RequestRecord> result = absl::UnknownError("no attempt");
        node_->outbox().AwaitAttempt(acted.proposal_to, "p:" + request_id,
                                     [&](absl::StatusOr<v1::RequestRecord> r) {
                                       result = std::move(r);
                                       attempted.Notify();
                                     });
        attempted.WaitForNotification();
        return result;
      });
}

absl::StatusOr<uint64_t> OperatorApi::BeginEvidenceUpload(const CallInfo& call,
                                                          const std::string& request_id,
                                                          const std::string& name,
                                                          uint64_t size,
                                                          const std::string& sha256) {
  return Call<absl::StatusOr<uint64_t>>(
      call, "BeginEvidenceUpload", {"reviewer"}, [&](const CertIdentity& op) {
        return node_->evidence_intake().BeginUpload(op.operator_name, request_id, name, size,
                                                    sha256);
      });
}

absl::StatusOr<std::unique_ptr<EvidenceUploadStream>> OperatorApi::OpenEvidenceUpload(
    const CallInfo& call, const std::string& request_id, const std::string& sha256,
    uint64_t offset) {
  using Result = absl::StatusOr<std::unique_ptr<EvidenceUploadStream>>;
  return Call<Result>(call, "UploadEvidence", {"reviewer"},
                      [&](const CertIdentity& op) -> Result {
                        COMITY_ASSIGN_OR_RETURN(
                            std::unique_ptr<EvidenceIntake::Upload> upload,
                            node_->evidence_intake().OpenUpload(op.operator_name,
                                                                request_id, sha256, offset));
                        const uint64_t size = upload->size();
                        return std::unique_ptr<EvidenceUploadStream>(new EvidenceUploadStream(
                            node_, call, op.operator_name, std::move(upload), size));
                      });
}

absl::Status EvidenceUploadStream::Recorded(absl::Status st) {
  if (!st.ok()) {
    node_->intake().RecordRefusal(call_, "operator:" + operator_, "UploadEvidence", "", st);
  }
  return st;
}

absl::Status EvidenceUploadStream::Append(absl::string_view data) {
  return Recorded(upload_->Append(data));
}

absl::StatusOr<v1::EvidenceFile> EvidenceUploadStream::Finish() {
  absl::StatusOr<v1::EvidenceFile> file = upload_->Finish();
  Recorded(file.status()).IgnoreError();
  return file;
}

absl::StatusOr<v1::EvidenceFile> OperatorApi::ImportEvidence(const CallInfo& call,
                                                             const std::string& request_id,
                                                             const std::string& name) {
  return Call<absl::StatusOr<v1::EvidenceFile>>(
      call, "ImportEvidence", {"reviewer"}, [&](const CertIdentity& op) {
        return node_->evidence_intake().Import(op.operator_name, request_id, name);
      });
}

absl::StatusOr<int> OperatorApi::RetryEvidence(const CallInfo& call,
                                               const std::string& request_id) {
  return Call<absl::StatusOr<int>>(
      call, "RetryEvidence", {"submitter"}, [&](const CertIdentity& op) {
        return node_->evidence().Retry(op.operator_name, request_id);
      });
}

absl::StatusOr<std::vector<v1::PeerStatus>> OperatorApi::ListPeers(const CallInfo& call) {
  return Call<absl::StatusOr<std::vector<v1::PeerStatus>>>(
      call, "ListPeers", COMITY_ANY_ROLE, [&](const CertIdentity&) { return node_->Peers(); });
}

absl::StatusOr<std::vector<v1::KeyStatus>> OperatorApi::ListKeys(const CallInfo& call) {
  return Call<absl::StatusOr<std::vector<v1::KeyStatus>>>(
      call, "ListKeys", COMITY_ANY_ROLE,
      [&](const CertIdentity&) -> absl::StatusOr<std::vector<v1::KeyStatus>> {
        return node_->keys().List();
      });
}

absl::StatusOr<OverduePage> OperatorApi::ListOverdue(const CallInfo& call, int limit,
                                                     const std::string& page_token) {
  return Call<absl::StatusOr<OverduePage>>(
      call, "ListOverdue", COMITY_ANY_ROLE, [&](const CertIdentity&) {
        // Well under what the operator listener may send (four times this).
        return node_->deadlines().Overdue(
            limit, page_token, node_->context().config().limits().max_message_bytes());
      });
}

absl::StatusOr<RecordPage> OperatorApi::ListRequests(const CallInfo& call,
                                                     v1::Direction direction, int limit,
                                                     const std::string& page_token) {
  return Call<absl::StatusOr<RecordPage>>(
      call, "ListRequests", COMITY_ANY_ROLE, [&](const CertIdentity&) {
        ListQuery q;
        q.direction = direction;
        q.limit = limit <= 0 ? kDefaultListLimit : std::min(limit, kMaxListLimit);
        q.after = page_token;
        // Well under what the operator listener may send (four times this).
        q.max_bytes = node_->context().config().limits().max_message_bytes();
        return node_->store()->requests().List(q);
      });
}

absl::StatusOr<RequestView> OperatorApi::GetRequest(const CallInfo& call,
                                                    const std::string& request_id, bool chain) {
  return Call<absl::StatusOr<RequestView>>(
      call, "GetRequest", COMITY_ANY_ROLE,
      [&](const CertIdentity&) -> absl::StatusOr<RequestView> {
        COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> records,
                                chain ? node_->Chain(request_id) : node_->Get(request_id));
        return ViewOf(std::move(records));
      });
}

absl::StatusOr<std::unique_ptr<EvidenceReader>> OperatorApi::ExportEvidence(
    const CallInfo& call, const std::string& request_id, const std::string& sha256,
    uint64_t offset, bool allow_tlp_red) {
  return Call<absl::StatusOr<std::unique_ptr<EvidenceReader>>>(
      call, "ExportEvidence", COMITY_ANY_ROLE, [&](const CertIdentity& op) {
        return node_->evidence().OpenForExport(op.operator_name, request_id, sha256, offset,
                                               allow_tlp_red, 1 << 20);
      });
}

absl::StatusOr<CustodyExport::Package> OperatorApi::ExportCustodyPackage(
    const CallInfo& call, const std::string& request_id, const std::string& destination,
    const std::vector<std::string>& files, bool allow_tlp_red) {
  return Call<absl::StatusOr<CustodyExport::Package>>(
      call, "ExportCustodyPackage", COMITY_ANY_ROLE, [&](const CertIdentity& op) {
        return node_->custody().Export(op.operator_name, request_id, destination, files,
                                       allow_tlp_red);
      });
}

absl::StatusOr<Backup::Copy> OperatorApi::TakeBackup(const CallInfo& call) {
  return Call<absl::StatusOr<Backup::Copy>>(
      call, "Backup", {"admin"},
      [&](const CertIdentity& op) { return node_->backup().Write(op.operator_name); });
}

absl::StatusOr<AuditEntriesPage> OperatorApi::AuditEntries(
    const CallInfo& call, AuditFilter filter, const std::string& page_token) {
  return Call<absl::StatusOr<AuditEntriesPage>>(
      call, "audit.GetEntries", {"auditor"},
      [&](const CertIdentity&) -> absl::StatusOr<AuditEntriesPage> {
        if (!page_token.empty()) {
          COMITY_ASSIGN_OR_RETURN(filter.from_index, DecodeAuditToken(page_token, "e1"));
        }
        filter.limit = filter.limit == 0 ? kMaxAuditEntriesPage
                                         : std::min(filter.limit, kMaxAuditEntriesPage);
        filter.max_bytes = node_->context().config().limits().max_message_bytes();
        AuditStore& audit = node_->store()->audit();
        AuditEntriesPage page;
        // The size first: every entry of the page is within it or newer.
        COMITY_ASSIGN_OR_RETURN(page.tree_size, audit.Size());
        COMITY_ASSIGN_OR_RETURN(AuditEntryPage read, audit.EntryPage(filter));
        page.entries = std::move(read.entries);
        if (read.next_index != 0)
          page.next_page_token = EncodeAuditToken("e1", read.next_index);
        return page;
      });
}

absl::StatusOr<TreeHeadsPage> OperatorApi::AuditTreeHeads(const CallInfo& call, int limit,
                                                          const std::string& page_token) {
  return Call<absl::StatusOr<TreeHeadsPage>>(
      call, "audit.GetTreeHeads", {"auditor"},
      [&](const CertIdentity&) -> absl::StatusOr<TreeHeadsPage> {
        uint64_t from_size = 0;
        if (!page_token.empty()) {
          COMITY_ASSIGN_OR_RETURN(from_size, DecodeAuditToken(page_token, "h1"));
        }
        limit = limit <= 0 ? kMaxTreeHeadsPage : std::min(limit, kMaxTreeHeadsPage);
        const size_t max_bytes = node_->context().config().limits().max_message_bytes();
        // One more than the page: whether another follows.
        COMITY_ASSIGN_OR_RETURN(std::vector<StoredTreeHead> heads,
                                node_->store()->audit().TreeHeads(from_size, limit + 1));
        TreeHeadsPage page;
        page.keys = node_->OwnKeys();
        size_t bytes = 0;
        uint64_t last_size = 0;
        for (StoredTreeHead& h : heads) {
          const size_t size = h.signed_head.ByteSizeLong();
          if (static_cast<int>(page.heads.size()) == limit ||
              (!page.heads.empty() && bytes + size > max_bytes)) {
            page.next_page_token = EncodeAuditToken("h1", last_size + 1);
            break;
          }
          bytes += size;
          last_size = h.head.tree_size();
          page.heads.push_back(std::move(h.signed_head));
        }
        return page;
      });
}

absl::StatusOr<v1::SignedEnvelope> OperatorApi::AuditSignHead(const CallInfo& call) {
  return Call<absl::StatusOr<v1::SignedEnvelope>>(
      call, "audit.SignTreeHead", {"auditor"},
      [&](const CertIdentity&) { return node_->witness().SignTreeHead(); });
}

absl::StatusOr<AuditProof> OperatorApi::AuditGetProof(const CallInfo& call, uint64_t index,
                                                      uint64_t tree_size, bool consistency,
                                                      uint64_t old_size) {
  return Call<absl::StatusOr<AuditProof>>(
      call, "audit.GetProof", {"auditor"},
      [&](const CertIdentity&) -> absl::StatusOr<AuditProof> {
        AuditStore& audit = node_->store()->audit();
        AuditProof proof;
        COMITY_ASSIGN_OR_RETURN(uint64_t size, audit.Size());
        proof.tree_size = tree_size == 0 ? size : tree_size;
        COMITY_ASSIGN_OR_RETURN(proof.root, audit.RootAt(proof.tree_size));
        if (consistency) {
          COMITY_ASSIGN_OR_RETURN(proof.old_root, audit.RootAt(old_size));
          COMITY_ASSIGN_OR_RETURN(proof.hashes,
                                  audit.ConsistencyProofAt(old_size, proof.tree_size));
          return proof;
        }
        COMITY_ASSIGN_OR_RETURN(proof.hashes, audit.InclusionProofAt(index, proof.tree_size));
        AuditFilter f;
        f.from_index = index;
        f.limit = 1;
        COMITY_ASSIGN_OR_RETURN(std::vector<std::string> entry, audit.Entries(f));
        if (!entry.empty()) proof.entry = std::move(entry[0]);
        return proof;
      });
}

absl::StatusOr<VerifyReport> OperatorApi::AuditVerify(const CallInfo& call) {
  return Call<absl::StatusOr<VerifyReport>>(
      call, "audit.Verify", {"auditor"},
      [&](const CertIdentity&) { return node_->witness().Verify(); });
}

absl::StatusOr<AuditExportStream> OperatorApi::AuditExport(const CallInfo& call) {
  return Call<absl::StatusOr<AuditExportStream>>(
      call, "audit.Export", {"auditor"},
      [&](const CertIdentity& op) -> absl::StatusOr<AuditExportStream> {
        node_->witness().RecordAuditExport("auditor:" + op.operator_name);
        AuditExportStream stream;
        AuditStore& audit = node_->store()->audit();
        COMITY_ASSIGN_OR_RETURN(stream.size, audit.Size());
        stream.first.set_party(node_->party());
        stream.first.set_exported_at_unix_micros(absl::ToUnixMicros(node_->context().Now()));
        stream.max_bytes = node_->context().config().limits().max_message_bytes();
        for (const v1::PublicKey& k : node_->OwnKeys()) {
          v1::PublicKeyEntry* e = stream.first.add_public_keys();
          e->set_party(k.party());
          e->set_key_id(k.key_id());
          e->set_ed25519_public_key(k.ed25519_public_key());
        }
        const uint64_t size = stream.size;
        stream.read_heads = [&audit, size](uint64_t from_size, uint64_t limit)
            -> absl::StatusOr<std::vector<StoredTreeHead>> {
          COMITY_ASSIGN_OR_RETURN(std::vector<StoredTreeHead> heads,
                                  audit.TreeHeads(from_size, limit));
          // The heads of the log as exported: one signed after the size was
          // read would cover entries the export does not hold.
          while (!heads.empty() && heads.back().head.tree_size() > size) heads.pop_back();
          return heads;
        };
        stream.read = [&audit, size](uint64_t from, uint64_t limit) {
          AuditFilter f;
          f.from_index = from;
          f.limit = std::min(limit, size > from ? size - from : 0);
          if (f.limit == 0) return absl::StatusOr<std::vector<std::string>>(std::vector<std::string>());
          return audit.Entries(f);
        };
        return stream;
      });
}

}  // namespace comity
