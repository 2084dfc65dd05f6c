// What a peer node may ask of this node (PeerService, proto/comity/v1/peer.proto),
// transport-free: every call is authenticated and admitted by the intake,
// handed to one duty, and its refusal logged and audited. The gRPC adapter
// (server/grpc/services.cc) only converts messages and statuses.
//
//   auto receipt = node->peer_api().DeliverRequest(call, request.request());
#ifndef COMITY_SERVER_NODE_PEER_API_H_
#define COMITY_SERVER_NODE_PEER_API_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "comity/v1/envelope.pb.h"
#include "comity/v1/peer.pb.h"
#include "server/node/evidence_exchange.h"
#include "server/node/request_intake.h"

namespace comity {

class Node;

// Thread-safe.
class PeerApi {
 public:
  explicit PeerApi(Node* node) : node_(node) {}

  absl::StatusOr<v1::SignedEnvelope> DeliverRequest(const CallInfo& call,
                                                    const v1::SignedEnvelope& request);
  // One outcome per request, in order; the call's own error (admission,
  // too many requests, a store failure) concerns them all.
  absl::StatusOr<std::vector<absl::StatusOr<v1::SignedEnvelope>>> DeliverRequests(
      const CallInfo& call, const std::vector<const v1::SignedEnvelope*>& requests);
  absl::StatusOr<v1::SignedEnvelope> DeliverTransition(
      const CallInfo& call, const v1::SignedEnvelope& transition);
  absl::StatusOr<v1::SignedEnvelope> ProposeTransition(
      const CallInfo& call, const v1::SignedEnvelope& proposal);
  // A reader of the file in chunks the transport can carry.
  absl::StatusOr<std::unique_ptr<EvidenceReader>> FetchEvidence(
      const CallInfo& call, const std::string& request_id, const std::string& sha256,
      uint64_t offset);
  absl::StatusOr<v1::SignedEnvelope> ExchangeTreeHeads(const CallInfo& call,
                                                       const v1::SignedEnvelope& head);
  absl::StatusOr<std::vector<std::string>> GetConsistencyProof(const CallInfo& call,
                                                               uint64_t old_size,
                                                               uint64_t new_size);
  absl::Status ReportSplitView(const CallInfo& call, const v1::SignedEnvelope& first,
                               const v1::SignedEnvelope& second);
  absl::StatusOr<bool> AnnounceKey(const CallInfo& call,
                                   const v1::AnnounceKeyRequest& request);
  absl::StatusOr<std::optional<v1::SignedEnvelope>> GetHeldHead(const CallInfo& call);
  absl::StatusOr<v1::GetSharedRecordsResponse> GetSharedRecords(
      const CallInfo& call, const v1::GetSharedRecordsRequest& request);

 private:
  // Admits the call, runs `fn(peer)`, and logs and audits its refusal
  // (every one, docs/refusals.md).
  template <typename T, typename Fn>
  T Call(const CallInfo& call, const char* method, const std::string& payload_sha256, Fn fn);

  Node* const node_;
};

}  // namespace comity

#endif  // COMITY_SERVER_NODE_PEER_API_H_
