#include "server/node/node_context.h"

#include <algorithm>
#include <random>

#include "absl/strings/str_cat.h"
#include "server/core/envelope.h"
#include "server/util/log.h"
#include "server/util/status_macros.h"

namespace comity {

void PeerContacts::Note(const std::string& party, const absl::Status& status) {
  const bool reached =
      status.ok() || (!absl::IsUnavailable(status) && !absl::IsDeadlineExceeded(status));
  absl::MutexLock lock(&mu_);
  Contact& c = contacts_[party];
  c.last_attempt = clock_->Now();
  c.reachable = reached;
  if (reached) c.last_ok = c.last_attempt;
  if (!status.ok()) c.last_error = StatusText(status);
}

PeerContacts::Contact PeerContacts::Get(const std::string& party) const {
  absl::MutexLock lock(&mu_);
  auto it = contacts_.find(party);
  return it == contacts_.end() ? Contact() : it->second;
}

absl::Duration NodeContext::attempt_timeout() const {
  return absl::Milliseconds(config().delivery().attempt_timeout_ms());
}

absl::StatusOr<v1::SignedEnvelope> NodeContext::Sign(
    absl::string_view payload_type, const google::protobuf::Message& message) const {
  return SignEnvelope(payload_type, SerializeDeterministic(message), party(),
                      config().signing_key().key_id(), *setup_->signing_key);
}

v1::AuditEntry NodeContext::Event(v1::AuditEventType type, std::string actor,
                                  std::string request_id, std::string party) const {
  v1::AuditEntry e;
  e.set_time_unix_micros(absl::ToUnixMicros(Now()));
  e.set_type(type);
  e.set_actor(std::move(actor));
  e.set_request_id(std::move(request_id));
  e.set_party(std::move(party));
  return e;
}

absl::StatusOr<v1::SignedEnvelope> NodeContext::SignHead(AuditWriter& w) const {
  v1::TreeHead head;
  head.set_party(party());
  head.set_tree_size(w.size());
  head.set_root_hash(w.Root());
  head.set_timestamp_unix_micros(absl::ToUnixMicros(Now()));
  COMITY_ASSIGN_OR_RETURN(v1::SignedEnvelope signed_head,
                          Sign(kTreeHeadPayloadType, head));
  COMITY_RETURN_IF_ERROR(w.PutTreeHead(head, signed_head));
  return signed_head;
}

void NodeContext::AuditOrLog(const AuditFn& fn) const {
  absl::Status st = store_->audit().Append(fn);
  if (!st.ok()) LogEvent(LogLevel::kError, "audit_error", {{"error", st.ToString()}});
}

absl::Duration NodeContext::Backoff(uint32_t attempts, uint32_t max_ms) const {
  const v1::DeliveryConfig& d = config().delivery();
  const double max = max_ms != 0 ? max_ms : d.retry_max_ms();
  double ms = d.retry_initial_ms();
  for (uint32_t i = 1; i < attempts && ms < max; ++i) ms *= 2;
  ms = std::min<double>(ms, max);
  thread_local std::mt19937_64 rng(std::random_device{}());
  std::uniform_real_distribution<double> jitter(0.5, 1.0);
  return absl::Milliseconds(ms * jitter(rng));
}

std::string StatusText(const absl::Status& status) {
  return absl::StrCat(absl::StatusCodeToString(status.code()), ": ", status.message());
}

bool IsPermanentRefusal(absl::StatusCode code) {
  return code == absl::StatusCode::kInvalidArgument ||
         code == absl::StatusCode::kAlreadyExists ||
         code == absl::StatusCode::kFailedPrecondition ||
         code == absl::StatusCode::kResourceExhausted;
}

}  // namespace comity
