// The node's front door (docs/architecture.md, "The node"): who is calling
// (authentication from the TLS certificate, with a short cache), whether the
// call is admitted (a peer's rate limit, an operator's roles), that every
// refusal is logged and audited, and the checks and storage of a request a
// peer delivers.
//
//   auto peer = intake.AdmitPeer(call, "DeliverRequest");
//   if (!peer.ok()) return peer.status();  // Audited already.
//   auto receipt = intake.ReceiveRequest(*peer, envelope);
//   if (!receipt.ok()) intake.RecordRefusal(call, "peer:" + *peer, "DeliverRequest",
//   hash, status);
#ifndef COMITY_SERVER_NODE_REQUEST_INTAKE_H_
#define COMITY_SERVER_NODE_REQUEST_INTAKE_H_

#include <cstdint>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "comity/v1/assessment.pb.h"
#include "comity/v1/envelope.pb.h"
#include "comity/v1/request.pb.h"
#include "server/crypto/x509_identity.h"
#include "server/node/node_context.h"
#include "server/node/rate_limiter.h"

namespace comity {

// What the transport knows of one call: the client's TLS certificate (PEM,
// with its chain), its address, and the size of the message it sent.
struct CallInfo {
  std::string cert_pem;
  std::string chain_pem;
  std::string tls_peer;  // e.g. "ipv4:127.0.0.1:5555", for logs.
  uint64_t message_bytes = 0;
};

// Whether `status` refuses what the caller asked (bad input, wrong state,
// not permitted, too large, already there, a contradiction shown), as
// opposed to a failure of the node or of a transport (Unavailable,
// Internal, ...), which the node logs as its own.
bool IsRefusal(const absl::Status& status);

// Thread-safe.
class RequestIntake {
 public:
  explicit RequestIntake(const NodeContext* ctx);

  // The party a peer node's certificate speaks for, admitted under its rate
  // limit (limits.peer_rate_per_second). PermissionDenied (logged and
  // audited as AUTH_FAILURE) unless it names a configured peer and was
  // issued by that party's CA; ResourceExhausted (audited as a refusal)
  // for a message over limits.max_message_bytes; Unavailable over the rate
  // limit (audited in aggregate, PEER_RATE_LIMITED, by AuditRateLimited).
  // `cost`: how many calls this one counts as for the rate limit (the
  // requests of a DeliverRequests batch).
  absl::StatusOr<std::string> AdmitPeer(const CallInfo& call, absl::string_view method,
                                        uint32_t cost = 1);
  // The operator an operator certificate speaks for, if it holds one of
  // `roles` (empty: any role or none). PermissionDenied (logged and audited)
  // otherwise.
  absl::StatusOr<CertIdentity> AdmitOperator(const CallInfo& call,
                                             absl::string_view method,
                                             std::initializer_list<const char*> roles);

  // Logs and audits that an admitted caller's call was refused: a peer's
  // (PEER_REQUEST_REFUSED, with the SHA-256 of what it sent) or an
  // operator's (AUTH_FAILURE for a permission refused, else
  // OPERATOR_REQUEST_REFUSED). Errors are logged, not returned: the refusal
  // stands either way. Only refusals (IsRefusal) are audited; a failure of
  // the node itself (Internal, Unavailable, ...) is the caller's to log.
  void RecordRefusal(const CallInfo& call, const std::string& actor,
                     absl::string_view method, const std::string& payload_sha256,
                     const absl::Status& why);

  // Checks and durably stores a request from `peer_party` (admitted), then
  // returns the signed receipt. Errors as documented on
  // PeerService.DeliverRequest in proto/comity/v1/peer.proto. Nothing is
  // stored unless OK.
  // `note`, if any, ends the REQUEST_RECEIVED entry's detail (a request
  // recovered from the peer after a restore, docs/backup.md).
  absl::StatusOr<v1::SignedEnvelope> ReceiveRequest(const std::string& peer_party,
                                                    const v1::SignedEnvelope& envelope,
                                                    absl::string_view note = {});
  // ReceiveRequest for a batch (PeerService.DeliverRequests): each request
  // is checked on its own, and those new to this node are stored in one
  // transaction under one signed tree head (Receipt.batch_size). One
  // outcome per envelope, in order.
  std::vector<absl::StatusOr<v1::SignedEnvelope>> ReceiveRequests(
      const std::string& peer_party, const std::vector<const v1::SignedEnvelope*>& envelopes,
      absl::string_view note = {});

  // Writes one PEER_RATE_LIMITED entry per peer refused since the last call.
  // Run by a worker.
  void AuditRateLimited();

 private:
  // A request that passed every check but storing: what its log entries
  // and receipt say.
  struct Checked {
    const v1::SignedEnvelope* envelope;
    v1::RequestBody body;
    std::string payload_hash;
    v1::Assessment assessment;
    bool disagree = false;
    absl::Time created;
    absl::Duration age;
  };
  // Checks one request before the store: OK with nullopt if it is new here,
  // or the outcome already decided (the receipt of the same bytes received
  // before, or a refusal).
  absl::StatusOr<std::optional<Checked>> Check(const std::string& peer_party,
                                               const v1::SignedEnvelope& envelope,
                                               absl::Time now,
                                               absl::StatusOr<v1::SignedEnvelope>* decided);
  // Builds the records of `batch` (entries, one head, receipts) inside the
  // store's transaction.
  absl::StatusOr<std::vector<v1::RequestRecord>> BuildBatch(
      const std::string& peer_party, const std::vector<const Checked*>& batch,
      absl::Time now, absl::string_view note, AuditWriter& w) const;

  // Certificates that authenticated recently, by the hash of their PEM and
  // chain, so that a busy peer's certificate is parsed and chain-verified
  // once a minute, not once a call.
  std::optional<CertIdentity> CachedIdentity(const std::string& key) const;
  void CacheIdentity(const std::string& key, const CertIdentity& id) const;
  absl::StatusOr<std::string> AuthenticatePeer(const CallInfo& call) const;
  absl::StatusOr<CertIdentity> AuthenticateOperator(const CallInfo& call) const;
  // `event`: the log event (peer_request_rejected, operator_denied).
  void RecordAuthFailure(const CallInfo& call, const char* event,
                         const std::string& actor, absl::string_view method,
                         const absl::Status& why);

  const NodeContext* const ctx_;
  RateLimiter limiter_;
  static constexpr size_t kAuthCacheSize = 4096;
  struct AuthCacheEntry {
    CertIdentity identity;
    absl::Duration expires;  // On the monotonic clock.
  };
  mutable absl::Mutex auth_mu_;
  mutable std::map<std::string, AuthCacheEntry> auth_cache_ ABSL_GUARDED_BY(auth_mu_);
};

}  // namespace comity

#endif  // COMITY_SERVER_NODE_REQUEST_INTAKE_H_
