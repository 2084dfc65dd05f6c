#include "server/node/evidence_exchange.h"

#include <algorithm>
#include <iterator>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/core/case_rules.h"
#include "server/node/case_records.h"
#include "server/util/hex.h"
#include "server/util/log.h"
#include "server/util/status_macros.h"

namespace comity {
namespace {

constexpr int kFetchBatch = 64;

}  // namespace

absl::StatusOr<std::string> EvidenceReader::Next() {
  std::string chunk;
  absl::Status st =
      files_->Read(sha256_, offset_, chunk_bytes_, [&](absl::string_view data) {
        chunk.assign(data.data(), data.size());
        return absl::CancelledError("one chunk");  // Stop after one.
      });
  if (!st.ok() && !absl::IsCancelled(st)) return st;
  offset_ += chunk.size();
  return chunk;
}

EvidenceExchange::EvidenceExchange(const NodeContext* ctx,
                                   std::unique_ptr<EvidenceStore> files)
    : ctx_(ctx), files_(std::move(files)) {
  absl::MutexLock lock(&rounds_mu_);
  for (const auto& [peer, unused] : ctx_->setup().peers) {
    rounds_[peer] = std::make_unique<absl::Mutex>();
  }
}

absl::Status EvidenceExchange::CheckAccess(const std::string& peer_party,
                                           const std::string& request_id,
                                           const std::string& sha256) {
  COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> records,
                          ctx_->store().requests().Get(request_id));
  const v1::RequestRecord* row = RowOf(records, v1::INCOMING);
  bool listed = false;
  if (row != nullptr) {
    v1::RequestBody body;
    if (body.ParseFromString(row->request().payload()) &&
        body.requesting_party() == peer_party) {
      for (const v1::SignedEnvelope& env : row->transitions()) {
        v1::Transition t;
        if (!t.ParseFromString(env.payload())) continue;
        for (const v1::EvidenceFile& f : t.evidence()) listed |= f.sha256() == sha256;
      }
    }
  }
  if (!listed) {
    return absl::PermissionDeniedError(absl::StrCat(
        "no evidence file ", HexEncode(sha256).substr(0, 16), " was given to ",
        peer_party, " for request ", request_id.substr(0, 64)));
  }
  std::vector<std::string> open = UnacceptedConditions(row->transitions(), sha256);
  if (!open.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "released only under conditions ", peer_party,
        " has not accepted yet (ETS185 Art 28(2)): ", absl::StrJoin(open, "; "),
        "; accept them with comity accept-conditions"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<EvidenceReader>> EvidenceExchange::OpenForPeer(
    const std::string& peer_party, const std::string& request_id,
    const std::string& sha256, uint64_t offset, size_t chunk_bytes) {
  COMITY_RETURN_IF_ERROR(CheckAccess(peer_party, request_id, sha256));
  return std::make_unique<EvidenceReader>(files_.get(), sha256, offset, chunk_bytes);
}

absl::StatusOr<std::unique_ptr<EvidenceReader>> EvidenceExchange::OpenForExport(
    const std::string& operator_name, const std::string& request_id,
    const std::string& sha256, uint64_t offset, bool allow_tlp_red, size_t chunk_bytes) {
  COMITY_ASSIGN_OR_RETURN(ExportableRecord held, LoadForExport(ctx_->store(), request_id));
  const v1::RequestRecord& row = held.record;
  const v1::RequestBody& body = held.body;
  std::string name;
  for (const v1::SignedEnvelope& env : row.transitions()) {
    v1::Transition t;
    if (!t.ParseFromString(env.payload())) continue;
    for (const v1::EvidenceFile& f : t.evidence()) {
      if (f.sha256() == sha256) name = f.name();
    }
  }
  if (name.empty() || !files_->Has(sha256)) {
    return absl::NotFoundError(absl::StrCat(
        "request ", request_id, " has no evidence file with that SHA-256 here"));
  }
  COMITY_RETURN_IF_ERROR(held.MayLeave(allow_tlp_red));
  const bool red = held.red;
  if (offset == 0) {
    COMITY_RETURN_IF_ERROR(ctx_->store().audit().Append([&](AuditWriter& w) {
      v1::AuditEntry e =
          ctx_->Event(v1::EVIDENCE_EXPORTED, "operator:" + operator_name, request_id,
                      row.direction() == v1::OUTGOING ? body.requested_party()
                                                      : body.requesting_party());
      e.add_hashes(sha256);
      e.set_detail(absl::StrCat(name, "; ", v1::Tlp_Name(body.handling().tlp()),
                                red ? ", exported with --allow-tlp-red" : ""));
      return w.Append(&e).status();
    }));
    LogEvent(red ? LogLevel::kWarning : LogLevel::kInfo, "evidence_exported",
             {{"request_id", request_id},
              {"file", name},
              {"operator", operator_name},
              {"tlp", v1::Tlp_Name(body.handling().tlp())}});
  }
  return std::make_unique<EvidenceReader>(files_.get(), sha256, offset, chunk_bytes);
}

void EvidenceExchange::FetchRound(const std::string& peer,
                                  const std::function<bool()>& stopping) {
  absl::Mutex* round = nullptr;
  {
    absl::MutexLock lock(&rounds_mu_);
    auto it = rounds_.find(peer);
    if (it == rounds_.end()) return;
    round = it->second.get();
  }
  absl::MutexLock one_round(round);
  for (const PendingEvidence& f : DueFrom(peer, kFetchBatch)) {
    if (stopping()) return;
    CaseStore& cases = ctx_->store().cases();
    const FileKey key(f.request_id, f.sha256);
    if (files_->Has(f.sha256)) {  // Held already (another request's copy).
      SetBackoff(peer, key, -absl::InfiniteDuration());
      cases.MarkEvidenceHeld(f.request_id, f.sha256).IgnoreError();
      continue;
    }
    auto records = ctx_->store().requests().Get(f.request_id);
    const v1::RequestRecord* row = records.ok() ? RowOf(*records, v1::OUTGOING) : nullptr;
    if (row == nullptr) continue;
    // Released only once its conditions are accepted: not due until then.
    if (!UnacceptedConditions(row->transitions(), f.sha256).empty()) {
      SetBackoff(peer, key, -absl::InfiniteDuration());
      cases
          .MarkEvidenceDeferred(f.request_id, f.sha256,
                                "waiting for the release conditions to be accepted",
                                false, absl::InfiniteFuture())
          .IgnoreError();
      continue;
    }
    const std::string transfer = HexEncode(f.sha256);
    absl::Status st = [&]() -> absl::Status {
      COMITY_ASSIGN_OR_RETURN(uint64_t offset,
                              files_->BeginUpload(transfer, f.size, f.sha256));
      if (offset < f.size) {
        COMITY_RETURN_IF_ERROR(ctx_->transport().FetchEvidence(
            f.peer, f.request_id, f.sha256, offset,
            [&](absl::string_view chunk) -> absl::Status {
              COMITY_RETURN_IF_ERROR(files_->AppendChunk(transfer, offset, chunk));
              offset += chunk.size();
              return absl::OkStatus();
            },
            absl::Milliseconds(ctx_->config().evidence().chunk_timeout_ms())));
      }
      COMITY_RETURN_IF_ERROR(files_->FinishUpload(transfer).status());
      return cases.MarkEvidenceHeld(f.request_id, f.sha256, [&](AuditWriter& w) {
        v1::AuditEntry e =
            ctx_->Event(v1::EVIDENCE_RECEIVED, "peer:" + f.peer, f.request_id, f.peer);
        e.add_hashes(f.sha256);
        e.set_detail(absl::StrCat(f.name, ", ", f.size, " bytes, SHA-256 verified"));
        return w.Append(&e).status();
      });
    }();
    if (st.ok()) {
      SetBackoff(peer, key, -absl::InfiniteDuration());
      LogEvent(LogLevel::kInfo, "evidence_received",
               {{"request_id", f.request_id},
                {"file", f.name},
                {"bytes", absl::StrCat(f.size)}});
      continue;
    }
    // Backed off with jitter; after max_fetch_attempts, left for an
    // operator to ask again (comity fetch ID).
    const uint32_t attempts = f.attempts + 1;
    const uint32_t max_attempts = ctx_->config().evidence().max_fetch_attempts();
    const bool give_up = attempts >= max_attempts;
    const absl::Duration backoff =
        ctx_->Backoff(attempts, ctx_->config().evidence().retry_max_ms());
    SetBackoff(peer, key,
               give_up ? -absl::InfiniteDuration() : ctx_->MonotonicNow() + backoff);
    cases
        .MarkEvidenceDeferred(
            f.request_id, f.sha256,
            give_up ? absl::StrCat(
                          "gave up after ", attempts,
                          " attempts (comity fetch ID tries again): ", StatusText(st))
                    : StatusText(st),
            true, give_up ? absl::InfiniteFuture() : ctx_->Now() + backoff)
        .IgnoreError();
    LogEvent(give_up ? LogLevel::kError : LogLevel::kWarning,
             give_up ? "evidence_fetch_abandoned" : "evidence_fetch_failed",
             {{"request_id", f.request_id},
              {"file", f.name},
              {"attempts", absl::StrCat(attempts)},
              {"error", st.ToString()}});
  }
}

std::vector<PendingEvidence> EvidenceExchange::DueFrom(const std::string& peer,
                                                       int limit) {
  CaseStore& cases = ctx_->store().cases();
  const absl::Time now = ctx_->Now();
  const absl::Duration longest =
      absl::Milliseconds(ctx_->config().evidence().retry_max_ms());
  std::vector<PendingEvidence> out;
  std::set<FileKey> taken;
  auto due = cases.DueEvidence(peer, now, limit, now + longest);
  if (!due.ok()) {
    LogEvent(LogLevel::kError, "store_error", {{"error", due.status().ToString()}});
    return out;
  }
  for (PendingEvidence& f : *due) {
    FileKey key(f.request_id, f.sha256);
    if (const absl::Duration left = BackoffLeft(peer, key); left > absl::ZeroDuration()) {
      // Due by a wall clock stepped forward since the failure, not yet by
      // the backoff: the stored time says when it really is.
      cases.MarkEvidenceDeferred(f.request_id, f.sha256, f.last_error, false, now + left)
          .IgnoreError();
      continue;
    }
    taken.insert(key);
    out.push_back(std::move(f));
  }
  // Files whose backoff here has ended though their stored time has not
  // come: the wall clock was stepped back since.
  std::vector<FileKey> ended;
  {
    absl::MutexLock lock(&backoff_mu_);
    const absl::Duration mono = ctx_->MonotonicNow();
    for (const auto& [key, until] : backoff_[peer]) {
      if (until <= mono && taken.count(key) == 0) ended.push_back(key);
    }
  }
  for (const FileKey& key : ended) {
    if (out.size() >= static_cast<size_t>(limit)) break;
    auto pending = cases.PendingEvidenceOf(key.first);
    if (!pending.ok()) continue;
    bool found = false;
    for (PendingEvidence& f : *pending) {
      if (f.sha256 != key.second) continue;
      // Not waiting for conditions, nor given up (both unscheduled).
      found = f.next_attempt_at != absl::InfiniteFuture();
      if (found) out.push_back(std::move(f));
    }
    if (!found) SetBackoff(peer, key, -absl::InfiniteDuration());
  }
  return out;
}

absl::Duration EvidenceExchange::BackoffLeft(const std::string& peer,
                                             const FileKey& file) {
  absl::MutexLock lock(&backoff_mu_);
  auto p = backoff_.find(peer);
  if (p == backoff_.end()) return absl::ZeroDuration();
  auto it = p->second.find(file);
  if (it == p->second.end()) return absl::ZeroDuration();
  return std::max(absl::ZeroDuration(), it->second - ctx_->MonotonicNow());
}

void EvidenceExchange::SetBackoff(const std::string& peer, const FileKey& file,
                                  absl::Duration until) {
  absl::MutexLock lock(&backoff_mu_);
  if (until == -absl::InfiniteDuration()) {
    auto p = backoff_.find(peer);
    if (p != backoff_.end()) p->second.erase(file);
    return;
  }
  backoff_[peer][file] = until;
}

absl::StatusOr<int> EvidenceExchange::Retry(const std::string& operator_name,
                                            const std::string& request_id) {
  COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> records,
                          ctx_->store().requests().Get(request_id));
  const v1::RequestRecord* row = RowOf(records, v1::OUTGOING);
  if (row == nullptr) {
    return absl::NotFoundError(absl::StrCat(
        "this node sent no request ", request_id.substr(0, 64),
        ": evidence is fetched for requests it sent (comity list --sent)"));
  }
  COMITY_ASSIGN_OR_RETURN(int files,
                          ctx_->store().cases().RetryEvidence(request_id, ctx_->Now()));
  {
    // Due now, whatever backoff ran here.
    absl::MutexLock lock(&backoff_mu_);
    for (auto& [peer, files_of_peer] : backoff_) {
      for (auto it = files_of_peer.begin(); it != files_of_peer.end();) {
        it = it->first.first == request_id ? files_of_peer.erase(it) : std::next(it);
      }
    }
  }
  LogEvent(LogLevel::kInfo, "evidence_fetch_retried",
           {{"request_id", request_id},
            {"files", absl::StrCat(files)},
            {"operator", operator_name}});
  if (files > 0 && wake_) {
    COMITY_ASSIGN_OR_RETURN(v1::RequestBody body, BodyOf(*row));
    wake_(body.requested_party());
  }
  return files;
}

std::vector<v1::PendingEvidenceStatus> EvidenceExchange::PendingOf(
    const std::vector<v1::RequestRecord>& records) const {
  std::vector<v1::PendingEvidenceStatus> out;
  const uint32_t max_attempts = ctx_->config().evidence().max_fetch_attempts();
  for (const v1::RequestRecord& r : records) {
    // Files are listed by the steps of a case: none before its first (a
    // request just delivered, as the submitter sees it), so no query.
    if (r.direction() != v1::OUTGOING || r.transitions_size() == 0) continue;
    absl::StatusOr<v1::RequestBody> body = BodyOf(r);
    if (!body.ok()) continue;
    auto pending = ctx_->store().cases().PendingEvidenceOf(body->id());
    if (!pending.ok()) continue;
    for (const PendingEvidence& f : *pending) {
      v1::PendingEvidenceStatus s;
      s.set_sha256(f.sha256);
      s.set_name(f.name);
      s.set_size(f.size);
      s.set_attempts(f.attempts);
      s.set_last_error(f.last_error);
      if (f.next_attempt_at != absl::InfiniteFuture()) {
        s.set_next_attempt_unix_micros(absl::ToUnixMicros(f.next_attempt_at));
      }
      s.set_gave_up(f.attempts >= max_attempts);
      out.push_back(std::move(s));
    }
  }
  return out;
}

std::vector<v1::StoredEvidence> EvidenceExchange::HeldOf(
    const std::vector<v1::RequestRecord>& records) const {
  std::vector<v1::StoredEvidence> out;
  for (const v1::RequestRecord& r : records) {
    for (const v1::SignedEnvelope& env : r.transitions()) {
      v1::Transition t;
      if (!t.ParseFromString(env.payload())) continue;
      for (const v1::EvidenceFile& f : t.evidence()) {
        if (!files_->Has(f.sha256())) continue;
        v1::StoredEvidence s;
        s.set_sha256(f.sha256());
        s.set_path(files_->PathOf(f.sha256()));
        out.push_back(std::move(s));
      }
    }
  }
  return out;
}

}  // namespace comity
