#include "server/audit/coverage.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "comity/v1/audit.pb.h"
#include "comity/v1/envelope.pb.h"
#include "comity/v1/record.pb.h"
#include "server/audit/receipt.h"
#include "server/crypto/sha256.h"
#include "server/util/hex.h"

namespace comity {
namespace {

std::string Short(absl::string_view hash) { return HexEncode(hash).substr(0, 16); }

std::string EntryName(int64_t index, int type) {
  return absl::StrCat("entry ", index, " (",
                      v1::AuditEventType_Name(static_cast<v1::AuditEventType>(type)), ")");
}

}  // namespace

void CoverageChecker::Fail(std::string message) {
  if (error_.empty()) error_ = std::move(message);
}

CoverageChecker::Expected* CoverageChecker::Find(const std::string& request_id) {
  auto it = expected_.find(request_id);
  return it == expected_.end() ? nullptr : &it->second;
}

void CoverageChecker::AddEntry(uint64_t position, absl::string_view bytes) {
  v1::AuditEntry e;
  if (!e.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return;
  if (log_start_us_ < 0) log_start_us_ = e.time_unix_micros();
  if (e.request_id().empty() || e.hashes_size() == 0) return;
  const int64_t index = static_cast<int64_t>(position);
  switch (e.type()) {
    case v1::REQUEST_RECEIVED:
    case v1::REQUEST_SUBMITTED:
    case v1::REQUEST_APPROVED: {
      Expected& x = expected_[e.request_id()];
      x.request_entry = index;
      x.request_type = e.type();
      x.payload_hash = e.hashes(0);
      if (e.type() == v1::REQUEST_RECEIVED) x.received_entry_hash = Sha256(bytes);
      break;
    }
    case v1::DELIVERY_ACKNOWLEDGED: {
      Expected& x = expected_[e.request_id()];
      x.receipt_entry = index;
      x.receipt_hash = e.hashes(0);
      break;
    }
    case v1::CASE_DECIDED:
    case v1::CASE_UPDATED:
      expected_[e.request_id()].steps.push_back(Step{position, e.hashes(0)});
      break;
    case v1::TRANSITION_DELIVERED:
      if (e.hashes_size() > 1)
        expected_[e.request_id()].acks.emplace_back(e.hashes(0), e.hashes(1));
      break;
    case v1::EVIDENCE_IMPORTED:
      expected_[e.request_id()].staged.push_back(e.hashes(0));
      break;
    default:
      break;
  }
}

void CoverageChecker::CheckRequest(const StoredRequestRow& row) {
  ++items_;
  const bool incoming = row.direction == v1::INCOMING;
  const std::string what =
      absl::StrCat("request ", row.request_id, incoming ? " (received)" : " (sent)");
  Expected* x = Find(row.request_id);
  if (x == nullptr || x->request_entry < 0) {
    if (log_start_us_ < 0 || row.stored_at_us < log_start_us_) {
      // Stored before the log began (a file migrated from schema version 1).
      ++uncovered_;
      expected_[row.request_id].request_seen = true;
      return;
    }
    Fail(absl::StrCat(what, " is stored but no entry of the log records it: it was added "
                            "behind the node's back"));
    return;
  }
  x->request_seen = true;
  const std::string logged = EntryName(x->request_entry, x->request_type);
  if ((x->request_type == v1::REQUEST_RECEIVED) != incoming) {
    Fail(absl::StrCat(what, " is stored as ", incoming ? "received" : "sent", " but ", logged,
                      " logged it the other way: the stored row was changed"));
    return;
  }
  v1::SignedEnvelope env;
  if (!env.ParseFromString(row.request_envelope)) {
    Fail(absl::StrCat(what, ": the stored request does not parse; ", logged,
                      " logged it: it was changed after it was logged"));
    return;
  }
  const std::string hash = Sha256(env.payload());
  if (hash != x->payload_hash) {
    Fail(absl::StrCat(what, ": the stored request's payload has SHA-256 ", Short(hash),
                      "..., not ", Short(x->payload_hash), "... as ", logged,
                      " holds: it was changed after it was logged"));
    return;
  }
  if (row.payload_sha256 != hash) {
    Fail(absl::StrCat(what, ": column payload_sha256 differs from the stored payload's "
                            "SHA-256 (", logged, " holds the payload's): the row was changed"));
    return;
  }
  // A draft awaiting approval is not signed yet.
  if (!(row.state == v1::AWAITING_APPROVAL && !incoming)) {
    absl::Status sig = VerifyEnvelope(env, kRequestPayloadType, *keys_);
    if (!sig.ok()) {
      Fail(absl::StrCat(what, ": the stored request's signature does not verify (",
                        sig.message(), "): it was changed after ", logged, " logged it"));
      return;
    }
  }
  if (row.receipt_envelope.empty()) {
    if (!incoming && x->receipt_entry >= 0) {
      Fail(absl::StrCat(what, ": ", EntryName(x->receipt_entry, v1::DELIVERY_ACKNOWLEDGED),
                        " logged its receipt but none is stored: it was deleted"));
    }
    return;
  }
  ++items_;
  v1::SignedEnvelope receipt_env;
  v1::Receipt receipt;
  if (!receipt_env.ParseFromString(row.receipt_envelope) ||
      !ParseReceipt(receipt_env, &receipt)) {
    Fail(absl::StrCat(what, ": the stored receipt does not parse: it was changed"));
    return;
  }
  absl::Status sig = VerifyReceiptAuthentic(receipt_env, *keys_);
  if (incoming) {
    // This node's own receipt: it names the REQUEST_RECEIVED entry.
    if (receipt.request_payload_sha256() != x->payload_hash ||
        Sha256(receipt.received_entry()) != x->received_entry_hash) {
      Fail(absl::StrCat(what, ": the stored receipt does not name the payload and entry ",
                        logged, " holds: it was changed"));
    } else if (!sig.ok()) {
      Fail(absl::StrCat(what, ": the stored receipt does not verify (", sig.message(),
                        "): it was changed"));
    }
    return;
  }
  if (x->receipt_entry < 0) {
    Fail(absl::StrCat(what, ": a receipt is stored but no DELIVERY_ACKNOWLEDGED entry logs "
                            "it: it was added behind the node's back"));
    return;
  }
  const std::string receipt_logged = EntryName(x->receipt_entry, v1::DELIVERY_ACKNOWLEDGED);
  const std::string receipt_hash = Sha256(receipt_env.payload());
  if (receipt_hash != x->receipt_hash) {
    Fail(absl::StrCat(what, ": the stored receipt's payload has SHA-256 ", Short(receipt_hash),
                      "..., not ", Short(x->receipt_hash), "... as ", receipt_logged,
                      " holds: it was changed after it was logged"));
  } else if (!sig.ok()) {
    Fail(absl::StrCat(what, ": the stored receipt does not verify (", sig.message(),
                      "): it was changed after ", receipt_logged, " logged it"));
  }
}

void CoverageChecker::CheckStep(const StoredStepRow& row) {
  ++items_;
  const std::string what =
      absl::StrCat("request ", row.request_id, ": step ", row.sequence);
  Expected* x = Find(row.request_id);
  if (x != nullptr && x->request_entry < 0 && x->request_seen) {
    ++uncovered_;  // Its request predates the log.
    return;
  }
  if (x == nullptr || row.sequence < 1 ||
      static_cast<size_t>(row.sequence) > x->steps.size()) {
    Fail(absl::StrCat(what, " is stored but no CASE_DECIDED or CASE_UPDATED entry logs it: it "
                            "was added behind the node's back"));
    return;
  }
  x->steps_seen = std::max(x->steps_seen, static_cast<size_t>(row.sequence));
  const Step& logged = x->steps[static_cast<size_t>(row.sequence) - 1];
  const std::string by = absl::StrCat("entry ", logged.entry);
  v1::SignedEnvelope env;
  if (!env.ParseFromString(row.envelope)) {
    Fail(absl::StrCat(what, " does not parse; ", by, " logged it: it was changed"));
    return;
  }
  const std::string hash = Sha256(env.payload());
  if (hash != logged.hash) {
    Fail(absl::StrCat(what, " has SHA-256 ", Short(hash), "..., not ", Short(logged.hash),
                      "... as ", by, " holds: it was changed after it was logged"));
    return;
  }
  absl::Status sig = VerifyEnvelope(env, kTransitionPayloadType, *keys_);
  if (!sig.ok()) {
    Fail(absl::StrCat(what, ": its signature does not verify (", sig.message(),
                      "): it was changed after ", by, " logged it"));
    return;
  }
  if (row.ack.empty()) return;
  ++items_;
  v1::SignedEnvelope ack;
  if (!ack.ParseFromString(row.ack)) {
    Fail(absl::StrCat(what, ": its stored acknowledgement does not parse: it was changed"));
    return;
  }
  const std::pair<std::string, std::string> pair(hash, Sha256(ack.payload()));
  if (std::find(x->acks.begin(), x->acks.end(), pair) == x->acks.end()) {
    Fail(absl::StrCat(what, ": its stored acknowledgement is not the one a "
                            "TRANSITION_DELIVERED entry logs: it was changed"));
    return;
  }
  sig = VerifyEnvelope(ack, kAckPayloadType, *keys_);
  if (!sig.ok()) {
    Fail(absl::StrCat(what, ": its acknowledgement's signature does not verify (",
                      sig.message(), "): it was changed"));
  }
}

void CoverageChecker::CheckStagedEvidence(const std::string& request_id,
                                          const std::string& sha256) {
  ++items_;
  Expected* x = Find(request_id);
  if (x == nullptr || std::find(x->staged.begin(), x->staged.end(), sha256) == x->staged.end()) {
    Fail(absl::StrCat("request ", request_id, ": staged evidence file ", Short(sha256),
                      "... is stored but no EVIDENCE_IMPORTED entry logs it: it was added or "
                      "changed behind the node's back"));
  }
}

void CoverageChecker::Finish(VerifyReport* report) {
  for (const auto& [id, x] : expected_) {
    if (!error_.empty()) break;
    if (x.request_entry >= 0 && !x.request_seen) {
      Fail(absl::StrCat("request ", id, ": ", EntryName(x.request_entry, x.request_type),
                        " logged it but it is not stored: it was deleted"));
    } else if (x.steps_seen < x.steps.size()) {
      Fail(absl::StrCat("request ", id, ": entry ", x.steps[x.steps_seen].entry,
                        " logged step ", x.steps_seen + 1,
                        " but it is not stored: it was deleted"));
    }
  }
  report->items_checked += items_;
  report->items_uncovered += uncovered_;
  if (report->ok && !error_.empty()) {
    report->ok = false;
    report->error = error_;
  }
}

}  // namespace comity
