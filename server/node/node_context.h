// What the duties of a node share (docs/architecture.md, "The node"): its
// immutable setup, clock, store, transport and metrics, and the few things
// every duty does the same way: sign as this party, date an audit entry,
// append entries, back off after failures, note how a peer answered.
//
//   NodeContext ctx(setup, store.get(), &transport, clock, &metrics);
//   COMITY_ASSIGN_OR_RETURN(v1::SignedEnvelope env, ctx.Sign(kAckPayloadType, ack));
//   ctx.AuditOrLog([&](AuditWriter& w) { auto e = ctx.Event(...); return
//   w.Append(&e).status(); });
#ifndef COMITY_SERVER_NODE_NODE_CONTEXT_H_
#define COMITY_SERVER_NODE_NODE_CONTEXT_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "comity/v1/audit.pb.h"
#include "comity/v1/envelope.pb.h"
#include "comity/v1/record.pb.h"
#include "google/protobuf/message.h"
#include "server/config/node_config.h"
#include "server/node/metrics.h"
#include "server/node/peer_transport.h"
#include "server/store/store.h"
#include "server/util/clock.h"

namespace comity {

// How each peer answered lately, for `comity peers` and for duties that skip
// a peer the outbox cannot reach. Thread-safe.
class PeerContacts {
 public:
  struct Contact {
    absl::Time last_ok = absl::InfinitePast();
    absl::Time last_attempt = absl::InfinitePast();
    std::string last_error;
    bool reachable = false;
  };
  explicit PeerContacts(const Clock* clock) : clock_(clock) {}
  // Notes the outcome of a call to `party`: a peer that answers, even with a
  // refusal, is reachable.
  void Note(const std::string& party, const absl::Status& status);
  Contact Get(const std::string& party) const;

 private:
  const Clock* clock_;
  mutable absl::Mutex mu_;
  std::map<std::string, Contact> contacts_ ABSL_GUARDED_BY(mu_);
};

// Thread-safe; everything it points to must outlive it.
class NodeContext {
 public:
  NodeContext(const NodeSetup* setup, Store* store, PeerTransport* transport,
              const Clock* clock, Metrics* metrics)
      : setup_(setup),
        store_(store),
        transport_(transport),
        clock_(clock),
        metrics_(metrics),
        contacts_(clock) {}

  const NodeSetup& setup() const { return *setup_; }
  const v1::NodeConfig& config() const { return setup_->config; }
  const std::string& party() const { return setup_->config.party(); }
  const KeyRing& key_ring() const { return setup_->key_ring; }
  Store& store() const { return *store_; }
  PeerTransport& transport() const { return *transport_; }
  Metrics& metrics() const { return *metrics_; }
  PeerContacts& contacts() const { return contacts_; }
  // The wall clock: dates and calendar deadlines.
  absl::Time Now() const { return clock_->Now(); }
  // The monotonic clock: what the node waits for (Clock::MonotonicNow).
  absl::Duration MonotonicNow() const { return clock_->MonotonicNow(); }
  const Clock& clock() const { return *clock_; }
  // The deadline of one call to a peer (delivery.attempt_timeout_ms).
  absl::Duration attempt_timeout() const;

  // `message`, serialized deterministically, signed as this party with its
  // current key under `payload_type`.
  absl::StatusOr<v1::SignedEnvelope> Sign(absl::string_view payload_type,
                                          const google::protobuf::Message& message) const;
  // An audit entry dated now.
  v1::AuditEntry Event(v1::AuditEventType type, std::string actor,
                       std::string request_id = "", std::string party = "") const;
  // Signs a head of the log as `w` holds it and stores it with the
  // transaction.
  absl::StatusOr<v1::SignedEnvelope> SignHead(AuditWriter& w) const;
  // Appends in a transaction of its own; a failure is logged (audit_error),
  // not returned: for entries that record what already happened.
  void AuditOrLog(const AuditFn& fn) const;
  // How long to wait after the `attempts`-th failure in a row:
  // retry_initial_ms doubling up to retry_max_ms, times a jitter in [0.5, 1).
  // `max_ms`: the longest delay (0: delivery.retry_max_ms).
  absl::Duration Backoff(uint32_t attempts, uint32_t max_ms = 0) const;
  // Notes a call's outcome in contacts().
  void NoteContact(const std::string& party, const absl::Status& status) const {
    contacts_.Note(party, status);
  }

 private:
  const NodeSetup* const setup_;
  Store* const store_;
  PeerTransport* const transport_;
  const Clock* const clock_;
  Metrics* const metrics_;
  mutable PeerContacts contacts_;
};

// A status as "CODE: message", as stored and shown to operators.
std::string StatusText(const absl::Status& status);

// Statuses with which a peer refuses something for good: sending the same
// bytes again cannot succeed. Not FAILED_PRECONDITION: a state that can
// clear by itself (a clock ahead of the receiver's, a step the receiver
// does not hold yet) is retried with backoff; nor RESOURCE_EXHAUSTED: a
// listener out of memory quota cancels calls that fit, and a message over
// the receiver's limit is a difference of configuration the partner can
// fix (this node checks its own requests against the same limits).
bool IsPermanentRefusal(absl::StatusCode code);

}  // namespace comity

#endif  // COMITY_SERVER_NODE_NODE_CONTEXT_H_
