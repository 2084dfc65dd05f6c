#include "server/node/recovery.h"

#include <functional>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/audit/receipt.h"
#include "server/core/deadlines.h"
#include "server/core/envelope.h"
#include "server/core/parties.h"
#include "server/core/peer_limits.h"
#include "server/crypto/sha256.h"
#include "server/node/case_records.h"
#include "server/util/log.h"
#include "server/util/status_macros.h"
#include "server/util/time_proto.h"

namespace comity {
namespace {

// A partner's pages must end: at most this many (10 million records).
constexpr int kMaxPages = 100000;
constexpr int kListed = 50;
constexpr size_t kMaxTokenBytes = 256;

std::string Note(const std::string& peer) {
  return absl::StrCat("recovered from ", peer, " after this node restarted behind it");
}

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

// Checks that the steps `row` holds are the ones the peer holds, then
// passes each later one to `apply` (which returns whether it was new).
absl::Status ApplySteps(const v1::RequestRecord& row, const v1::SharedRecord& record,
                        const std::string& peer,
                        const std::function<absl::StatusOr<bool>(const v1::SignedEnvelope&)>& apply,
                        int* recovered) {
  const int held = row.transitions_size();
  for (int i = 0; i < record.transitions_size(); ++i) {
    const v1::SignedEnvelope& step = record.transitions(i);
    if (i < held) {
      if (row.transitions(i).payload() != step.payload()) {
        return absl::AlreadyExistsError(absl::StrCat(
            "step ", i + 1, " held here differs from the one ", peer, " holds"));
      }
      continue;
    }
    absl::Status bounded = CheckEnvelopeBounds(step);
    absl::StatusOr<bool> applied = bounded.ok() ? apply(step) : absl::StatusOr<bool>(bounded);
    if (!applied.ok()) {
      return absl::Status(applied.status().code(),
                          absl::StrCat("step ", i + 1, ": ", applied.status().message()));
    }
    if (*applied) ++*recovered;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<Recovery::Outcome>> Recovery::RecoverFromPeers(absl::Time since) {
  std::vector<Outcome> outcomes;
  for (const auto& [peer, unused] : ctx_->setup().peers) {
    Outcome o;
    o.peer = peer;
    outcomes.push_back(std::move(o));
  }
  // Every peer at once; the store orders what they bring.
  {
    std::vector<std::thread> asking;
    asking.reserve(outcomes.size());
    for (Outcome& o : outcomes) {
      asking.emplace_back([this, since, &o] { RecoverFrom(o.peer, since, &o); });
    }
    for (std::thread& t : asking) t.join();
  }
  for (const Outcome& o : outcomes) {
    COMITY_RETURN_IF_ERROR(Audit(o));
    LogEvent(o.reached.ok() && o.not_recovered_count == 0 ? LogLevel::kInfo
                                                          : LogLevel::kWarning,
             "records_recovered",
             {{"peer", o.peer},
              {"reached", o.reached.ok() ? "yes" : std::string(o.reached.message())},
              {"records", absl::StrCat(o.records_seen)},
              {"requests", absl::StrCat(o.requests_recovered)},
              {"receipts", absl::StrCat(o.receipts_recovered)},
              {"steps", absl::StrCat(o.steps_recovered)},
              {"not_recovered", absl::StrJoin(o.not_recovered, "; ")}});
  }
  return outcomes;
}

void Recovery::RecoverFrom(const std::string& peer, absl::Time since, Outcome* out) {
  v1::GetSharedRecordsRequest req;
  if (since != absl::InfinitePast()) {
    req.set_changed_since_unix_micros(std::max<int64_t>(0, absl::ToUnixMicros(since - kClockMargin)));
  }
  std::set<std::string> tokens;
  for (int page = 0; page < kMaxPages; ++page) {
    absl::StatusOr<v1::GetSharedRecordsResponse> resp =
        ctx_->transport().GetSharedRecords(peer, req, ctx_->attempt_timeout());
    ctx_->NoteContact(peer, resp.status());
    if (!resp.ok()) {
      out->reached = resp.status();
      return;
    }
    if (resp->records_size() > kPageRecords) {
      out->reached = absl::InvalidArgumentError(
          absl::StrCat(peer, " answered with ", resp->records_size(), " records, more than ",
                       kPageRecords, " a page"));
      return;
    }
    for (const v1::SharedRecord& record : resp->records()) Apply(peer, record, out);
    if (resp->next_page_token().empty()) return;
    if (resp->next_page_token().size() > kMaxTokenBytes ||
        !tokens.insert(resp->next_page_token()).second) {
      out->reached = absl::InvalidArgumentError(
          absl::StrCat(peer, "'s pages do not end (a page token repeats or is too long)"));
      return;
    }
    req.set_page_token(resp->next_page_token());
  }
  out->reached = absl::InvalidArgumentError(
      absl::StrCat(peer, " sent more than ", kMaxPages, " pages"));
}

void Recovery::Apply(const std::string& peer, const v1::SharedRecord& record, Outcome* out) {
  ++out->records_seen;
  auto fail = [&](std::string what) {
    ++out->not_recovered_count;
    if (static_cast<int>(out->not_recovered.size()) < kListed) {
      out->not_recovered.push_back(std::move(what));
    }
  };
  v1::RequestBody body;
  if (absl::Status bounded = CheckEnvelopeBounds(record.request()); !bounded.ok()) {
    fail(absl::StrCat("a record whose request is out of bounds: ", bounded.message()));
    return;
  }
  if (!body.ParseFromString(record.request().payload()) || !IsCanonicalUuid(body.id())) {
    fail("a record whose request does not parse");
    return;
  }
  if (record.transitions_size() > PeerLimits::kMaxStepsPerCase) {
    fail(absl::StrCat("request ", body.id(), ": more than ", PeerLimits::kMaxStepsPerCase,
                      " steps"));
    return;
  }
  const bool sent = body.requesting_party() == ctx_->party() && body.requested_party() == peer;
  const bool received =
      body.requesting_party() == peer && body.requested_party() == ctx_->party();
  absl::StatusOr<std::vector<v1::RequestRecord>> records = ctx_->store().requests().Get(body.id());
  absl::Status applied = records.status();
  if (!sent && !received) {
    applied = absl::InvalidArgumentError(
        absl::StrCat("not a request between ", ctx_->party(), " and ", peer));
  } else if (applied.ok() && RowOf(*records, sent ? v1::INCOMING : v1::OUTGOING) != nullptr) {
    // An id is one case on a node.
    applied = absl::AlreadyExistsError(absl::StrCat(
        "its id is the id of a request this node ", sent ? "received" : "sent"));
  } else if (applied.ok()) {
    applied = sent ? ApplySent(peer, body, record, std::move(*records), out)
                   : ApplyReceived(peer, body, record, std::move(*records), out);
  }
  if (!applied.ok()) {
    fail(absl::StrCat("request ", body.id(), ": ", applied.message()));
  }
}

absl::Status Recovery::ApplySent(const std::string& peer, const v1::RequestBody& body,
                                 const v1::SharedRecord& record,
                                 std::vector<v1::RequestRecord> records, Outcome* out) {
  const std::string& id = body.id();
  const v1::RequestRecord* row = RowOf(records, v1::OUTGOING);
  const std::string note = Note(peer);
  const absl::Time now = ctx_->Now();
  if (row == nullptr || row->state() == v1::PENDING_DELIVERY) {
    if (row != nullptr && row->request().payload() != record.request().payload()) {
      return absl::AlreadyExistsError("this node holds another request under that id");
    }
    // What this node signed, whenever: its own signature; the receipt the
    // peer signed for exactly these bytes.
    if (record.request().signer_party() != ctx_->party()) {
      return absl::InvalidArgumentError("the request is not signed by this node");
    }
    COMITY_RETURN_IF_ERROR(
        VerifyEnvelope(record.request(), kRequestPayloadType, ctx_->key_ring()));
    if (!record.has_receipt()) {
      return absl::FailedPreconditionError(
          absl::StrCat(peer, " holds no receipt of it"));
    }
    COMITY_ASSIGN_OR_RETURN(
        v1::Receipt receipt,
        VerifyReceipt(record.request(), record.receipt(), peer, ctx_->key_ring()));
    v1::RequestRecord delivered;
    delivered.set_direction(v1::OUTGOING);
    delivered.set_state(v1::DELIVERED);
    delivered.set_case_state(v1::CASE_DELIVERED);
    *delivered.mutable_request() = record.request();
    *delivered.mutable_receipt() = record.receipt();
    const absl::Time next = NextDeadline(delivered, ctx_->config().service_levels());
    auto audit_receipt = [&](AuditWriter& w) -> absl::Status {
      v1::AuditEntry ack = ctx_->Event(v1::DELIVERY_ACKNOWLEDGED, "node", id, peer);
      ack.add_hashes(Sha256(record.receipt().payload()));
      ack.set_detail(absl::StrCat(peer, " log entry ",
                                  receipt.received_entry_proof().leaf_index(), " of ",
                                  receipt.received_entry_proof().tree_size(), "; ", note));
      return w.Append(&ack).status();
    };
    if (row == nullptr) {
      delivered.set_submitted_by("");
      *delivered.mutable_stored_at() = body.created_at();
      *delivered.mutable_updated_at() = ToProto(now);
      if (next != absl::InfiniteFuture()) *delivered.mutable_next_deadline() = ToProto(next);
      COMITY_RETURN_IF_ERROR(ctx_->store().requests().InsertOutgoing(
          KeyOf(body), delivered, [&](AuditWriter& w) -> absl::Status {
            v1::AuditEntry sent = ctx_->Event(v1::REQUEST_SUBMITTED, "node", id, peer);
            sent.add_hashes(Sha256(record.request().payload()));
            sent.set_assistance_type(body.assistance_type());
            sent.set_detail(absl::StrCat("created ", Rfc3339(FromProto(body.created_at())),
                                         "; ", note));
            COMITY_RETURN_IF_ERROR(w.Append(&sent).status());
            return audit_receipt(w);
          }));
      ++out->requests_recovered;
    } else {
      COMITY_RETURN_IF_ERROR(
          ctx_->store().outbox().MarkDelivered(id, record.receipt(), now, next, audit_receipt));
      ++out->receipts_recovered;
    }
    COMITY_ASSIGN_OR_RETURN(records, ctx_->store().requests().Get(id));
    row = RowOf(records, v1::OUTGOING);
    if (row == nullptr) return absl::InternalError("the recovered request is not stored");
  } else if (row->request().payload() != record.request().payload()) {
    return absl::AlreadyExistsError("this node holds another request under that id");
  } else if (row->state() != v1::DELIVERED) {
    return absl::FailedPreconditionError(absl::StrCat(
        "held here as ", v1::RequestState_Name(row->state()), ", delivered at ", peer));
  }
  // The peer's steps (and this node's, as the peer numbered its proposals)
  // after the last held here, in order, checked as on delivery.
  return ApplySteps(
      *row, record, peer,
      [&](const v1::SignedEnvelope& step) -> absl::StatusOr<bool> {
        COMITY_RETURN_IF_ERROR(cases_->ReceiveTransition(peer, step, note).status());
        return true;
      },
      &out->steps_recovered);
}

absl::Status Recovery::ApplyReceived(const std::string& peer, const v1::RequestBody& body,
                                     const v1::SharedRecord& record,
                                     std::vector<v1::RequestRecord> records, Outcome* out) {
  const std::string& id = body.id();
  const std::string note = Note(peer);
  const v1::RequestRecord* row = RowOf(records, v1::INCOMING);
  if (row == nullptr) {
    // Checked and stored as on delivery. The receipt is a new one: the
    // peer keeps the first, which names an entry of the log this node lost.
    COMITY_RETURN_IF_ERROR(intake_->ReceiveRequest(peer, record.request(), note).status());
    ++out->requests_recovered;
    COMITY_ASSIGN_OR_RETURN(records, ctx_->store().requests().Get(id));
    row = RowOf(records, v1::INCOMING);
    if (row == nullptr) return absl::InternalError("the recovered request is not stored");
  } else if (row->request().payload() != record.request().payload()) {
    return absl::AlreadyExistsError("this node holds another request under that id");
  }
  // This node's steps as the peer holds them, signed by this node: the
  // sequence numbers it must not sign again.
  return ApplySteps(
      *row, record, peer,
      [&](const v1::SignedEnvelope& step) { return cases_->RestoreStep(peer, step, note); },
      &out->steps_recovered);
}

absl::Status Recovery::Audit(const Outcome& o) {
  std::string detail;
  if (!o.reached.ok()) {
    absl::StrAppend(&detail, o.peer, " could not be asked to the end (",
                    o.reached.message(), "); ");
  }
  absl::StrAppend(&detail, "from ", o.peer, ": ", o.records_seen, " shared records, ",
                  o.requests_recovered, " requests, ", o.receipts_recovered, " receipts, ",
                  o.steps_recovered, " steps recovered");
  if (o.not_recovered_count > 0) {
    absl::StrAppend(&detail, "; not recovered (", o.not_recovered_count,
                    "): ", absl::StrJoin(o.not_recovered, "; "));
  }
  return ctx_->store().audit().Append([&](AuditWriter& w) {
    v1::AuditEntry e = ctx_->Event(v1::RECORDS_RECOVERED, "node", "", o.peer);
    e.set_detail(detail.substr(0, 2000));
    return w.Append(&e).status();
  });
}

absl::StatusOr<v1::GetSharedRecordsResponse> Recovery::Share(
    const std::string& peer, const v1::GetSharedRecordsRequest& request) {
  if (request.page_token().size() > kMaxTokenBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "page_token is ", request.page_token().size(), " bytes; at most ", kMaxTokenBytes));
  }
  SharedQuery q;
  q.partner = peer;
  if (request.changed_since_unix_micros() > 0) {
    q.changed_since = absl::FromUnixMicros(request.changed_since_unix_micros());
  }
  q.after = request.page_token();
  q.limit = kPageRecords;
  q.max_bytes = kPageBytes;
  COMITY_ASSIGN_OR_RETURN(RecordPage page, ctx_->store().requests().SharedWith(q));
  v1::GetSharedRecordsResponse resp;
  for (v1::RequestRecord& r : page.records) {
    // Drafts are not signed, nor sent yet; a request the partner refused
    // for good is not one it holds.
    if (r.direction() == v1::OUTGOING &&
        (r.state() == v1::AWAITING_APPROVAL || r.state() == v1::DELIVERY_REJECTED)) {
      continue;
    }
    v1::SharedRecord* shared = resp.add_records();
    *shared->mutable_request() = std::move(*r.mutable_request());
    if (r.has_receipt()) *shared->mutable_receipt() = std::move(*r.mutable_receipt());
    *shared->mutable_transitions() = std::move(*r.mutable_transitions());
  }
  resp.set_next_page_token(page.next_cursor);
  return resp;
}

}  // namespace comity
