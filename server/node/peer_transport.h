// How a node reaches its peers. The gRPC implementation is in
// server/grpc/grpc_peer_transport.h; tests may substitute a fake.
#ifndef COMITY_SERVER_NODE_PEER_TRANSPORT_H_
#define COMITY_SERVER_NODE_PEER_TRANSPORT_H_

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "comity/v1/envelope.pb.h"
#include "comity/v1/peer.pb.h"

namespace comity {

// Implementations are thread-safe.
class PeerTransport {
 public:
  virtual ~PeerTransport() = default;
  // Delivers a signed request envelope to `party` and returns the receipt
  // envelope it answers with, unverified. On failure, the peer's status (its
  // code tells whether retrying can help), or Unavailable /
  // DeadlineExceeded when it cannot be reached within `timeout`.
  virtual absl::StatusOr<v1::SignedEnvelope> DeliverRequest(
      const std::string& party, const v1::SignedEnvelope& request,
      absl::Duration timeout) = 0;

  // Delivers several signed request envelopes in one call
  // (DeliverRequests): one outcome per request, in order, each its receipt
  // or the peer's refusal of that request. The call's own error (as above)
  // concerns all of them. The default (for fakes) delivers them one by one.
  virtual absl::StatusOr<std::vector<absl::StatusOr<v1::SignedEnvelope>>> DeliverRequests(
      const std::string& party, const std::vector<const v1::SignedEnvelope*>& requests,
      absl::Duration timeout) {
    std::vector<absl::StatusOr<v1::SignedEnvelope>> out;
    for (const v1::SignedEnvelope* r : requests) {
      out.push_back(DeliverRequest(party, *r, timeout));
      const absl::Status& st = out.back().status();
      if (absl::IsUnavailable(st) || absl::IsDeadlineExceeded(st) || absl::IsCancelled(st))
        return st;
    }
    return out;
  }

  // Delivers a signed case transition to `party` and returns its signed
  // Acknowledgement, unverified. Errors as above.
  virtual absl::StatusOr<v1::SignedEnvelope> DeliverTransition(
      const std::string& party, const v1::SignedEnvelope& transition,
      absl::Duration timeout) = 0;

  // Sends the requesting party's signed proposal to `party`; returns the
  // transition it became.
  virtual absl::StatusOr<v1::SignedEnvelope> ProposeTransition(
      const std::string& party, const v1::SignedEnvelope& proposal,
      absl::Duration timeout) = 0;

  // Streams evidence file `sha256` of `request_id` from `party`, from
  // `offset`, passing each chunk to `fn` (a non-OK status from `fn` stops
  // the stream and is returned). `chunk_timeout` bounds the wait for each
  // chunk, not the whole file: DeadlineExceeded when one is late.
  virtual absl::Status FetchEvidence(
      const std::string& party, const std::string& request_id, const std::string& sha256,
      uint64_t offset, const std::function<absl::Status(absl::string_view)>& fn,
      absl::Duration chunk_timeout) = 0;

  // Audit log gossip (docs/audit_log.md). Errors as above.
  virtual absl::StatusOr<v1::SignedEnvelope> ExchangeTreeHeads(
      const std::string& party, const v1::SignedEnvelope& our_head,
      absl::Duration timeout) = 0;
  virtual absl::StatusOr<std::vector<std::string>> GetConsistencyProof(
      const std::string& party, uint64_t old_size, uint64_t new_size,
      absl::Duration timeout) = 0;
  virtual absl::Status ReportSplitView(const std::string& party,
                                       const v1::SignedEnvelope& first,
                                       const v1::SignedEnvelope& second,
                                       absl::Duration timeout) = 0;

  // The latest head of this node's own log that `party` holds (nullopt if
  // none): a node restored from a backup asks before signing anything
  // (docs/backup.md). Errors as above; the default (for fakes) is
  // Unimplemented.
  virtual absl::StatusOr<std::optional<v1::SignedEnvelope>> GetHeldHead(
      const std::string& party, absl::Duration timeout) {
    (void)party;
    (void)timeout;
    return absl::UnimplementedError("this transport cannot ask for held heads");
  }

  // A page of the requests `party` shares with this node changed since a
  // time (docs/backup.md), unverified. Errors as above; the default (for
  // fakes) is Unimplemented.
  virtual absl::StatusOr<v1::GetSharedRecordsResponse> GetSharedRecords(
      const std::string& party, const v1::GetSharedRecordsRequest& request,
      absl::Duration timeout) {
    (void)party;
    (void)request;
    (void)timeout;
    return absl::UnimplementedError("this transport cannot ask for shared records");
  }

  // Sends a key announcement (docs/keys.md) to `party`; returns whether
  // it taught the peer anything. Errors as above. The default (for fakes
  // that do not model keys) is Unimplemented.
  virtual absl::StatusOr<bool> AnnounceKey(const std::string& party,
                                           const v1::AnnounceKeyRequest& request,
                                           absl::Duration timeout) {
    (void)party;
    (void)request;
    (void)timeout;
    return absl::UnimplementedError("this transport does not carry key announcements");
  }

  // Ends every call in progress and fails new ones with Cancelled: the
  // node is stopping, and no peer may hold up the stop. Fakes may ignore
  // it.
  virtual void CancelAll() {}
};

}  // namespace comity

#endif  // COMITY_SERVER_NODE_PEER_TRANSPORT_H_
