// Unit tests of the node's duties (tests/node/): real keys and certificates
// (certs/make-network.sh, through TestNetwork), a real SQLite store in a
// temporary directory, a FakeClock, and instead of gRPC either a
// FakePeerTransport whose answers a test scripts or a LoopbackTransport that
// hands calls to another in-process node's PeerApi.
//
//   NodeHarness h({"FR", "JP"});
//   FakePeerTransport fake;
//   COMITY_ASSERT_OK_AND_ASSIGN(auto fr, h.MakeNode("FR", &fake));
//   fake.on_deliver_request = [](const std::string&, const v1::SignedEnvelope&) {
//     return absl::UnavailableError("down");
//   };
#ifndef COMITY_TESTS_NODE_NODE_TEST_SUPPORT_H_
#define COMITY_TESTS_NODE_NODE_TEST_SUPPORT_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "comity/v1/audit.pb.h"
#include "comity/v1/request.pb.h"
#include "server/config/node_config.h"
#include "server/node/node.h"
#include "server/node/peer_transport.h"
#include "server/util/clock.h"
#include "tests/testing/test_network.h"

namespace comity::testing {

// A transport whose every method calls the handler a test set, and counts
// the calls. Without a handler a method answers Unavailable. Thread-safe
// once the handlers are set.
class FakePeerTransport final : public PeerTransport {
 public:
  std::function<absl::StatusOr<v1::SignedEnvelope>(const std::string&,
                                                   const v1::SignedEnvelope&)>
      on_deliver_request, on_deliver_transition, on_propose, on_exchange_heads;
  std::function<absl::Status(const std::string& party, const std::string& request_id,
                             const std::string& sha256, uint64_t offset,
                             const std::function<absl::Status(absl::string_view)>& fn)>
      on_fetch_evidence;
  std::function<absl::StatusOr<std::vector<std::string>>(const std::string&, uint64_t,
                                                         uint64_t)>
      on_consistency_proof;
  std::function<absl::Status(const std::string&, const v1::SignedEnvelope&,
                             const v1::SignedEnvelope&)>
      on_report_split_view;
  std::function<absl::StatusOr<std::optional<v1::SignedEnvelope>>(const std::string&)>
      on_held_head;
  std::function<absl::StatusOr<bool>(const std::string&, const v1::AnnounceKeyRequest&)>
      on_announce_key;
  std::function<absl::StatusOr<v1::GetSharedRecordsResponse>(
      const std::string&, const v1::GetSharedRecordsRequest&)>
      on_shared_records;

  // Calls made so far of `method` ("DeliverRequest", "FetchEvidence", ...).
  int calls(const std::string& method) const;

  absl::StatusOr<v1::SignedEnvelope> DeliverRequest(const std::string& party,
                                                    const v1::SignedEnvelope& request,
                                                    absl::Duration timeout) override;
  absl::StatusOr<v1::SignedEnvelope> DeliverTransition(
      const std::string& party, const v1::SignedEnvelope& transition,
      absl::Duration timeout) override;
  absl::StatusOr<v1::SignedEnvelope> ProposeTransition(const std::string& party,
                                                       const v1::SignedEnvelope& proposal,
                                                       absl::Duration timeout) override;
  absl::Status FetchEvidence(const std::string& party, const std::string& request_id,
                             const std::string& sha256, uint64_t offset,
                             const std::function<absl::Status(absl::string_view)>& fn,
                             absl::Duration timeout) override;
  absl::StatusOr<v1::SignedEnvelope> ExchangeTreeHeads(const std::string& party,
                                                       const v1::SignedEnvelope& our_head,
                                                       absl::Duration timeout) override;
  absl::StatusOr<std::vector<std::string>> GetConsistencyProof(
      const std::string& party, uint64_t old_size, uint64_t new_size,
      absl::Duration timeout) override;
  absl::Status ReportSplitView(const std::string& party, const v1::SignedEnvelope& first,
                               const v1::SignedEnvelope& second,
                               absl::Duration timeout) override;
  absl::StatusOr<std::optional<v1::SignedEnvelope>> GetHeldHead(
      const std::string& party, absl::Duration timeout) override;
  absl::StatusOr<v1::GetSharedRecordsResponse> GetSharedRecords(
      const std::string& party, const v1::GetSharedRecordsRequest& request,
      absl::Duration timeout) override;
  absl::StatusOr<bool> AnnounceKey(const std::string& party,
                                   const v1::AnnounceKeyRequest& request,
                                   absl::Duration timeout) override;

 private:
  void Count(const std::string& method);
  mutable absl::Mutex mu_;
  std::map<std::string, int> calls_ ABSL_GUARDED_BY(mu_);
};

// Calls another in-process node's PeerApi as `from`'s node would over the
// wire (with `from`'s node certificate): two nodes without gRPC. A party can
// be taken down (Unavailable). Thread-safe.
class LoopbackTransport final : public PeerTransport {
 public:
  // `cert_pem`: the calling node's certificate.
  explicit LoopbackTransport(std::string cert_pem) : cert_pem_(std::move(cert_pem)) {}
  void Connect(const std::string& party, Node* node);
  void SetDown(const std::string& party, bool down);

  absl::StatusOr<v1::SignedEnvelope> DeliverRequest(const std::string& party,
                                                    const v1::SignedEnvelope& request,
                                                    absl::Duration timeout) override;
  absl::StatusOr<v1::SignedEnvelope> DeliverTransition(
      const std::string& party, const v1::SignedEnvelope& transition,
      absl::Duration timeout) override;
  absl::StatusOr<v1::SignedEnvelope> ProposeTransition(const std::string& party,
                                                       const v1::SignedEnvelope& proposal,
                                                       absl::Duration timeout) override;
  absl::Status FetchEvidence(const std::string& party, const std::string& request_id,
                             const std::string& sha256, uint64_t offset,
                             const std::function<absl::Status(absl::string_view)>& fn,
                             absl::Duration timeout) override;
  absl::StatusOr<v1::SignedEnvelope> ExchangeTreeHeads(const std::string& party,
                                                       const v1::SignedEnvelope& our_head,
                                                       absl::Duration timeout) override;
  absl::StatusOr<std::vector<std::string>> GetConsistencyProof(
      const std::string& party, uint64_t old_size, uint64_t new_size,
      absl::Duration timeout) override;
  absl::Status ReportSplitView(const std::string& party, const v1::SignedEnvelope& first,
                               const v1::SignedEnvelope& second,
                               absl::Duration timeout) override;
  absl::StatusOr<std::optional<v1::SignedEnvelope>> GetHeldHead(
      const std::string& party, absl::Duration timeout) override;
  absl::StatusOr<v1::GetSharedRecordsResponse> GetSharedRecords(
      const std::string& party, const v1::GetSharedRecordsRequest& request,
      absl::Duration timeout) override;
  absl::StatusOr<bool> AnnounceKey(const std::string& party,
                                   const v1::AnnounceKeyRequest& request,
                                   absl::Duration timeout) override;

 private:
  // The peer's node, or Unavailable if down or unknown.
  absl::StatusOr<Node*> To(const std::string& party);
  CallInfo Call(const google::protobuf::Message& msg) const;
  const std::string cert_pem_;
  absl::Mutex mu_;
  std::map<std::string, Node*> nodes_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, bool> down_ ABSL_GUARDED_BY(mu_);
};

// Credentials and configurations of parties (operators alice
// submitter+reviewer, bob reviewer+approver, carol auditor, dave no role),
// and their nodes built in-process: a real SQLite store under the party's
// directory, the harness's FakeClock, a transport the test gives. Nodes are
// not started (no threads) unless the test calls Start().
class NodeHarness {
 public:
  explicit NodeHarness(const std::vector<std::string>& parties = {"FR", "JP"});

  // The configuration text of `party`, to edit before MakeNode.
  std::string& ConfigText(const std::string& party) { return net_.ConfigText(party); }
  // A node of `party` over `transport` (which must outlive it), on the
  // harness's clock or on `clock` (which must outlive it). A second call for
  // the same party reopens its store and data directory.
  absl::StatusOr<std::unique_ptr<Node>> MakeNode(const std::string& party,
                                                 PeerTransport* transport,
                                                 const Clock* clock = nullptr);
  const NodeSetup& setup(const std::string& party) const { return *setups_.at(party); }
  FakeClock& clock() { return clock_; }
  const std::string& PartyDir(const std::string& party) const;

  // What a call from `party`'s node carries (its node certificate).
  CallInfo PeerCall(const std::string& party) const;
  // What a call of operator `name` of `party` carries.
  CallInfo OperatorCall(const std::string& party, const std::string& name) const;
  // A loopback transport for `party`'s node, with its certificate.
  std::unique_ptr<LoopbackTransport> Loopback(const std::string& party) const;

  // A complete PRESERVATION draft from `from` to `to`, BINDING between FR
  // and JP under the Budapest Convention.
  static v1::RequestBody Draft(const std::string& to);

 private:
  TestNetwork net_;
  FakeClock clock_;
  std::map<std::string, std::string> dirs_;
  std::map<std::string, std::unique_ptr<NodeSetup>> setups_;
};

// Calls `fn` until it returns true or `timeout` passes (for the threads of
// a started node). Returns the last result.
bool WaitFor(const std::function<bool()>& fn, absl::Duration timeout = absl::Seconds(10));

// The audit entries of `node` of `type` (and of `request_id` if not
// empty), parsed, in log order: what a test asserts a duty recorded.
absl::StatusOr<std::vector<v1::AuditEntry>> AuditEntriesOf(
    Node& node, v1::AuditEventType type, const std::string& request_id = "");

// Uploads the file at `path` through `intake` (as an operator's upload
// would, in pieces) as `name`, staged for a response to `request_id`.
absl::StatusOr<v1::EvidenceFile> StageFile(EvidenceIntake& intake,
                                           const std::string& operator_name,
                                           const std::string& request_id,
                                           const std::string& path, const std::string& name);

}  // namespace comity::testing

#endif  // COMITY_TESTS_NODE_NODE_TEST_SUPPORT_H_
