#include "server/node/case_records.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "server/core/deadlines.h"
#include "server/core/envelope.h"
#include "server/util/time_proto.h"
#include "server/crypto/sha256.h"
#include "server/util/status_macros.h"

namespace comity {

absl::StatusOr<std::vector<v1::RequestRecord>> LoadRecords(
    Store& store, const std::string& request_id) {
  COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> records,
                          store.requests().Get(request_id));
  if (records.empty()) {
    return absl::NotFoundError(
        absl::StrCat("no request ", request_id.substr(0, 64), " on this node"));
  }
  for (v1::RequestRecord& r : records) {
    if (r.direction() != v1::OUTGOING) continue;
    COMITY_ASSIGN_OR_RETURN(std::vector<PendingProposal> queued,
                            store.outbox().QueuedProposals(request_id));
    for (PendingProposal& q : queued) *r.add_queued_proposals() = std::move(q.envelope);
  }
  return records;
}

absl::StatusOr<v1::RequestRecord> LoadRecord(Store& store, const std::string& request_id,
                                             v1::Direction direction) {
  COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> records,
                          LoadRecords(store, request_id));
  for (v1::RequestRecord& r : records) {
    if (r.direction() == direction) return std::move(r);
  }
  return absl::NotFoundError(
      absl::StrCat("no ", direction == v1::OUTGOING ? "sent" : "received", " request ",
                   request_id.substr(0, 64), " on this node"));
}

const v1::RequestRecord* RowOf(const std::vector<v1::RequestRecord>& records,
                               v1::Direction direction) {
  for (const v1::RequestRecord& r : records) {
    if (r.direction() == direction) return &r;
  }
  return nullptr;
}

absl::Status ExportableRecord::MayLeave(bool allow_tlp_red) const {
  if (!red || allow_tlp_red) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("request ", body.id(),
                   " is TLP:RED: its material may not leave the node unless you say so "
                   "explicitly (--allow-tlp-red); that export is logged"));
}

absl::StatusOr<ExportableRecord> LoadForExport(Store& store, const std::string& request_id) {
  COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> records,
                          store.requests().Get(request_id));
  if (records.empty()) {
    return absl::NotFoundError(
        absl::StrCat("no request ", request_id.substr(0, 64), " on this node"));
  }
  ExportableRecord out;
  out.record = std::move(records[0]);
  COMITY_ASSIGN_OR_RETURN(out.body, BodyOf(out.record));
  out.red = out.body.handling().tlp() == v1::TLP_RED;
  return out;
}

absl::StatusOr<v1::RequestBody> BodyOf(const v1::RequestRecord& record) {
  v1::RequestBody body;
  if (!body.ParseFromString(record.request().payload())) {
    return absl::DataLossError(
        "a stored request body does not parse; run 'comity audit verify'");
  }
  return body;
}

RecordKey KeyOf(const v1::RequestBody& body) {
  return RecordKey{
      body.id(),
      body.requesting_party(),
      body.requested_party(),
      {body.related_request_ids().begin(), body.related_request_ids().end()}};
}

std::string ChainHead(const v1::RequestRecord& record) {
  if (record.transitions_size() == 0) return Sha256(record.request().payload());
  return Sha256(record.transitions(record.transitions_size() - 1).payload());
}

absl::Time LastStepTime(const v1::RequestRecord& record) {
  if (record.transitions_size() > 0) {
    v1::Transition t;
    if (t.ParseFromString(record.transitions(record.transitions_size() - 1).payload())) {
      return absl::FromUnixMicros(t.time_unix_micros());
    }
    return absl::InfinitePast();
  }
  v1::Receipt receipt;
  if (record.has_receipt() && ParseReceipt(record.receipt(), &receipt) &&
      receipt.has_received_at()) {
    return FromProto(receipt.received_at());
  }
  v1::RequestBody body;
  if (body.ParseFromString(record.request().payload()) && body.has_created_at()) {
    return FromProto(body.created_at());
  }
  return absl::InfinitePast();
}

std::vector<std::string> PendingConditions(
    const google::protobuf::RepeatedPtrField<v1::SignedEnvelope>& transitions) {
  std::vector<std::string> all;
  std::set<std::string> accepted;
  for (const v1::SignedEnvelope& env : transitions) {
    v1::Transition t;
    if (!t.ParseFromString(env.payload())) continue;
    for (const std::string& c : t.release_conditions()) all.push_back(c);
    for (const std::string& c : t.accepted_conditions()) accepted.insert(c);
  }
  std::vector<std::string> out;
  for (const std::string& c : all) {
    if (accepted.count(c) == 0 && std::find(out.begin(), out.end(), c) == out.end()) {
      out.push_back(c);
    }
  }
  return out;
}

absl::Time NextDeadlineAfter(const v1::RequestRecord& row, const v1::Transition& t,
                             const v1::SignedEnvelope& env,
                             const v1::ServiceLevels& levels) {
  v1::RequestRecord after = row;
  after.set_case_state(t.to_state());
  *after.add_transitions() = env;
  return NextDeadline(after, levels);
}

}  // namespace comity
