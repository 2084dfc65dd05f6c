// An in-memory node for fuzzing the peer API without gRPC (tests/fuzz).
#ifndef COMITY_TESTS_FUZZ_NODE_FIXTURE_H_
#define COMITY_TESTS_FUZZ_NODE_FIXTURE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "comity/v1/envelope.pb.h"
#include "comity/v1/request.pb.h"
#include "server/config/node_config.h"
#include "server/node/node.h"
#include "server/node/peer_transport.h"
#include "server/util/clock.h"
#include "tests/fuzz/fuzz_common.h"

namespace comity::fuzz {

// A transport to nowhere: every call is Unavailable. The fuzzed node never
// initiates delivery (its worker is not started), but gossip checks may call
// it.
class NoTransport final : public PeerTransport {
 public:
  absl::StatusOr<v1::SignedEnvelope> DeliverRequest(const std::string&,
                                                    const v1::SignedEnvelope&,
                                                    absl::Duration) override;
  absl::StatusOr<v1::SignedEnvelope> DeliverTransition(const std::string&,
                                                       const v1::SignedEnvelope&,
                                                       absl::Duration) override;
  absl::StatusOr<v1::SignedEnvelope> ProposeTransition(const std::string&,
                                                       const v1::SignedEnvelope&,
                                                       absl::Duration) override;
  absl::Status FetchEvidence(const std::string&, const std::string&, const std::string&,
                             uint64_t, const std::function<absl::Status(absl::string_view)>&,
                             absl::Duration) override;
  absl::StatusOr<v1::SignedEnvelope> ExchangeTreeHeads(const std::string&,
                                                       const v1::SignedEnvelope&,
                                                       absl::Duration) override;
  absl::StatusOr<std::vector<std::string>> GetConsistencyProof(const std::string&, uint64_t,
                                                               uint64_t,
                                                               absl::Duration) override;
  absl::Status ReportSplitView(const std::string&, const v1::SignedEnvelope&,
                               const v1::SignedEnvelope&, absl::Duration) override;
};

// The node of party FR (kParty) with one peer, JP (kPeer), configured from
// freshly made credentials and the project's treaty library, on an
// in-memory SQLite store and a fixed clock. Node logs are discarded.
class NodeFixture {
 public:
  static constexpr const char* kParty = "FR";
  static constexpr const char* kPeer = "JP";
  static constexpr const char* kPeerKeyId = "JP-1";
  static constexpr const char* kOwnKeyId = "FR-1";

  NodeFixture();
  ~NodeFixture();

  Node& node() { return *node_; }
  // A fresh node with an empty store (bounds memory on long runs).
  void Reset();
  const NodeSetup& setup() const { return *setup_; }
  const KeyRing& ring() const { return setup_->key_ring; }
  const SigningKey& own_key() const { return *setup_->signing_key; }
  const SigningKey& peer_key() const { return *peer_key_; }
  // The node's (fixed) time; requests created then are in its window.
  absl::Time now() const { return clock_.Now(); }

  // Signs `payload` as the peer (JP, key JP-1).
  v1::SignedEnvelope SignAsPeer(absl::string_view payload_type, std::string payload) const;

  // Valid request bodies from the peer to this node, created now; `variant`
  // picks the assistance type and optional fields.
  v1::RequestBody SampleRequest(int variant) const;
  static constexpr int kSampleRequests = 4;

 private:
  std::unique_ptr<NodeSetup> setup_;
  std::unique_ptr<SigningKey> peer_key_;
  FakeClock clock_;
  NoTransport transport_;
  std::unique_ptr<Node> node_;
};

}  // namespace comity::fuzz

#endif  // COMITY_TESTS_FUZZ_NODE_FIXTURE_H_
