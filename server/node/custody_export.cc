#include "server/node/custody_export.h"

#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "comity/v1/audit.pb.h"
#include "comity/v1/case.pb.h"
#include "comity/v1/custody.pb.h"
#include "server/audit/custody.h"
#include "server/crypto/sha256.h"
#include "server/node/case_records.h"
#include "server/util/hex.h"
#include "server/util/log.h"
#include "server/util/status_macros.h"

namespace comity {
namespace {

// The entries about a request that a court reads: how it was sent or
// received, assessed, decided and answered, and what became of its files.
// Delivery attempts and failures are left out (an outage can log thousands).
bool InPackage(v1::AuditEventType type) {
  switch (type) {
    case v1::REQUEST_SUBMITTED:
    case v1::REQUEST_APPROVED:
    case v1::REQUEST_RECEIVED:
    case v1::DELIVERY_ACKNOWLEDGED:
    case v1::ASSESSMENT_MADE:
    case v1::ASSESSMENT_DISAGREEMENT:
    case v1::CASE_DECIDED:
    case v1::CASE_UPDATED:
    case v1::TRANSITION_DELIVERED:
    case v1::PROPOSAL_QUEUED:
    case v1::EVIDENCE_IMPORTED:
    case v1::EVIDENCE_RECEIVED:
    case v1::EVIDENCE_EXPORTED:
    case v1::CUSTODY_PACKAGE_EXPORTED:
      return true;
    default:
      return false;
  }
}

}  // namespace

absl::StatusOr<CustodyExport::Package> CustodyExport::Export(
    const std::string& operator_name, const std::string& request_id,
    const std::string& destination, const std::vector<std::string>& files,
    bool allow_tlp_red) {
  if (destination.empty() || destination.size() > kMaxDestinationBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "destination must name the directory the package is written to, in 1 to ",
        kMaxDestinationBytes, " bytes"));
  }
  if (files.size() > static_cast<size_t>(kMaxFiles)) {
    return absl::InvalidArgumentError(
        absl::StrCat("at most ", kMaxFiles, " files in one custody package"));
  }
  COMITY_ASSIGN_OR_RETURN(ExportableRecord held, LoadForExport(ctx_->store(), request_id));
  COMITY_RETURN_IF_ERROR(held.MayLeave(allow_tlp_red));
  const v1::RequestRecord& row = held.record;
  const v1::RequestBody& body = held.body;
  const bool red = held.red;

  v1::CustodyPackage p;
  p.set_format_version(kCustodyFormatVersion);
  p.set_party(ctx_->party());
  p.set_request_id(request_id);
  p.set_exported_at_unix_micros(absl::ToUnixMicros(ctx_->Now()));
  p.set_exported_by("operator:" + operator_name);
  p.set_destination(destination);
  *p.mutable_request() = row.request();
  if (row.has_receipt()) *p.mutable_receipt() = row.receipt();
  *p.mutable_transitions() = row.transitions();
  COMITY_ASSIGN_OR_RETURN(std::vector<v1::SignedEnvelope> acks,
                          ctx_->store().cases().StepAcknowledgements(request_id));
  for (v1::SignedEnvelope& a : acks) *p.add_acknowledgements() = std::move(a);

  // The files, each with the RESPOND step that lists it and the step that
  // accepted its conditions.
  std::vector<v1::Transition> steps;
  for (const v1::SignedEnvelope& env : row.transitions()) {
    if (!steps.emplace_back().ParseFromString(env.payload())) {
      return absl::DataLossError(
          absl::StrCat("a stored step of request ", request_id, " does not parse"));
    }
  }
  std::set<std::string> seen;
  for (const std::string& sha256 : files) {
    if (!seen.insert(sha256).second) continue;
    v1::CustodyFile* f = nullptr;
    for (const v1::Transition& t : steps) {
      if (t.action() != v1::RESPOND || f != nullptr) continue;
      for (const v1::EvidenceFile& e : t.evidence()) {
        if (e.sha256() != sha256 || f != nullptr) continue;
        f = p.add_files();
        f->set_name(e.name());
        f->set_path(CustodyPath(e.name(), e.sha256()));
        f->set_sha256(e.sha256());
        f->set_size(e.size());
        f->set_respond_step(t.sequence());
        *f->mutable_release_conditions() = t.release_conditions();
      }
    }
    if (f == nullptr || !evidence_->files().Has(sha256)) {
      return absl::NotFoundError(absl::StrCat(
          "request ", request_id, " has no evidence file with SHA-256 ",
          sha256.size() == 32 ? HexEncode(sha256) : "(not 32 bytes)", " held here"));
    }
    if (f->release_conditions_size() == 0) continue;
    for (const v1::Transition& t : steps) {
      if (t.sequence() <= f->respond_step() || t.action() != v1::ACCEPT_CONDITIONS) continue;
      std::set<std::string> accepted(t.accepted_conditions().begin(),
                                     t.accepted_conditions().end());
      bool all = true;
      for (const std::string& c : f->release_conditions()) all &= accepted.count(c) > 0;
      if (all) {
        f->set_accepted_in_step(t.sequence());
        break;
      }
    }
  }

  // This node's entries about the request, proven in a head that covers
  // them (signed now unless the latest covers the whole log).
  COMITY_ASSIGN_OR_RETURN(v1::SignedEnvelope head_env, witness_->SignTreeHead());
  v1::TreeHead head;
  if (!head.ParseFromString(head_env.payload())) {
    return absl::InternalError("this node's tree head does not parse");
  }
  *p.mutable_tree_head() = head_env;
  AuditStore& audit = ctx_->store().audit();
  AuditFilter filter;
  filter.request_id = request_id;
  filter.limit = 1000;
  for (;;) {
    COMITY_ASSIGN_OR_RETURN(AuditEntryPage page, audit.EntryPage(filter));
    for (std::string& bytes : page.entries) {
      v1::AuditEntry e;
      if (!e.ParseFromString(bytes)) return absl::DataLossError("an audit entry does not parse");
      if (e.index() >= head.tree_size() || !InPackage(e.type())) continue;
      v1::ProvenEntry* pe = p.add_entries();
      COMITY_ASSIGN_OR_RETURN(std::vector<std::string> proof,
                              audit.InclusionProofAt(e.index(), head.tree_size()));
      for (std::string& h : proof) pe->add_proof(std::move(h));
      pe->set_entry(std::move(bytes));
    }
    if (page.next_index == 0 || page.next_index >= head.tree_size()) break;
    filter.from_index = page.next_index;
  }

  // Every key that signed something here.
  std::set<std::pair<std::string, std::string>> keys;
  auto key = [&](const v1::SignedEnvelope& env) {
    if (env.signer_party().empty() || !keys.insert({env.signer_party(), env.key_id()}).second)
      return;
    const VerifyingKey* k = ctx_->key_ring().Find(env.signer_party(), env.key_id());
    if (k == nullptr) return;  // The verifier names the envelope it cannot check.
    v1::PublicKey* pk = p.add_keys();
    pk->set_party(env.signer_party());
    pk->set_key_id(env.key_id());
    pk->set_ed25519_public_key(k->raw());
  };
  key(p.request());
  if (p.has_receipt()) {
    key(p.receipt());
    v1::Receipt r;
    if (r.ParseFromString(p.receipt().payload())) key(r.tree_head());
  }
  for (const v1::SignedEnvelope& t : p.transitions()) {
    key(t);
    v1::Transition parsed;
    if (parsed.ParseFromString(t.payload()) && parsed.has_proposal()) key(parsed.proposal());
  }
  for (const v1::SignedEnvelope& a : p.acknowledgements()) key(a);
  key(p.tree_head());

  Package out;
  out.bytes = p.SerializeAsString();
  const size_t max = ctx_->config().limits().max_message_bytes();
  if (out.bytes.size() > max) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the custody package of request ", request_id, " is ", out.bytes.size(),
        " bytes, over limits.max_message_bytes (", max,
        "); raise it in the node's configuration to export this case"));
  }
  out.sha256 = Sha256(out.bytes);
  COMITY_RETURN_IF_ERROR(audit.Append([&](AuditWriter& w) -> absl::Status {
    v1::AuditEntry e = ctx_->Event(v1::CUSTODY_PACKAGE_EXPORTED, "operator:" + operator_name,
                                   request_id,
                                   row.direction() == v1::OUTGOING ? body.requested_party()
                                                                   : body.requesting_party());
    e.add_hashes(out.sha256);
    for (const v1::CustodyFile& f : p.files()) e.add_hashes(f.sha256());
    e.set_detail(absl::StrCat("to ", destination, "; ", p.files_size(), " files; ",
                              v1::Tlp_Name(body.handling().tlp()),
                              red ? ", exported with --allow-tlp-red" : ""));
    COMITY_RETURN_IF_ERROR(w.Append(&e).status());
    return ctx_->SignHead(w).status();
  }));
  LogEvent(red ? LogLevel::kWarning : LogLevel::kInfo, "custody_package_exported",
           {{"request_id", request_id},
            {"operator", operator_name},
            {"files", absl::StrCat(p.files_size())},
            {"sha256", HexEncode(out.sha256)}});
  return out;
}

}  // namespace comity
