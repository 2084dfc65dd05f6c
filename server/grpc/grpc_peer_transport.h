// PeerTransport over gRPC with mutual TLS: one channel per peer, trusting
// only that peer's CA and presenting this node's certificate.
#ifndef COMITY_SERVER_GRPC_GRPC_PEER_TRANSPORT_H_
#define COMITY_SERVER_GRPC_GRPC_PEER_TRANSPORT_H_

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "comity/v1/peer.grpc.pb.h"
#include "server/config/node_config.h"
#include "server/node/peer_transport.h"
#include "server/util/clock.h"

namespace comity {

// Thread-safe. `setup` and `clock` (the node's) must outlive the transport.
// Every call is tracked, so that CancelAll ends them all at once (a stop
// waits for no peer), and a watchdog thread cancels an evidence fetch whose
// next chunk is late. Every deadline is on the monotonic clock: a step of
// the wall clock neither stretches nor ends one.
class GrpcPeerTransport final : public PeerTransport {
 public:
  explicit GrpcPeerTransport(const NodeSetup* setup,
                             const Clock* clock = SystemClock::Get());
  ~GrpcPeerTransport() override;
  absl::StatusOr<v1::SignedEnvelope> DeliverRequest(const std::string& party,
                                                    const v1::SignedEnvelope& request,
                                                    absl::Duration timeout) override;
  // DeliverRequests, or one DeliverRequest per request to a peer that
  // answers UNIMPLEMENTED (a node from before batches), remembered.
  absl::StatusOr<std::vector<absl::StatusOr<v1::SignedEnvelope>>> DeliverRequests(
      const std::string& party, const std::vector<const v1::SignedEnvelope*>& requests,
      absl::Duration timeout) override;
  absl::StatusOr<v1::SignedEnvelope> DeliverTransition(const std::string& party,
                                                       const v1::SignedEnvelope& transition,
                                 absl::Duration timeout) override;
  absl::StatusOr<v1::SignedEnvelope> ProposeTransition(const std::string& party,
                                                       const v1::SignedEnvelope& proposal,
                                                       absl::Duration timeout) override;
  absl::Status FetchEvidence(const std::string& party, const std::string& request_id,
                             const std::string& sha256, uint64_t offset,
                             const std::function<absl::Status(absl::string_view)>& fn,
                             absl::Duration chunk_timeout) override;
  absl::StatusOr<v1::SignedEnvelope> ExchangeTreeHeads(const std::string& party,
                                                       const v1::SignedEnvelope& our_head,
                                                       absl::Duration timeout) override;
  absl::StatusOr<std::vector<std::string>> GetConsistencyProof(const std::string& party,
                                                               uint64_t old_size,
                                                               uint64_t new_size,
                                                               absl::Duration timeout) override;
  absl::Status ReportSplitView(const std::string& party, const v1::SignedEnvelope& first,
                               const v1::SignedEnvelope& second,
                               absl::Duration timeout) override;
  absl::StatusOr<bool> AnnounceKey(const std::string& party,
                                   const v1::AnnounceKeyRequest& request,
                                   absl::Duration timeout) override;
  absl::StatusOr<v1::GetSharedRecordsResponse> GetSharedRecords(
      const std::string& party, const v1::GetSharedRecordsRequest& request,
      absl::Duration timeout) override;
  absl::StatusOr<std::optional<v1::SignedEnvelope>> GetHeldHead(
      const std::string& party, absl::Duration timeout) override;
  void CancelAll() override;

 private:
  template <typename Request, typename Response>
  using UnaryMethod = grpc::Status (v1::PeerService::Stub::*)(grpc::ClientContext*,
                                                             const Request&, Response*);
  struct Tracked {
    // Of the next chunk, on the monotonic clock (Clock::MonotonicNow);
    // InfiniteDuration: none.
    absl::Duration deadline;
    bool expired;  // Cancelled by the watchdog.
  };

  // Peers that answered DeliverRequests with UNIMPLEMENTED.
  bool Unbatched(const std::string& party) const;

  // The shared stub of `party`'s channel, made on first use.
  absl::StatusOr<v1::PeerService::Stub*> StubFor(const std::string& party);
  // A stub on a new channel of its own.
  absl::StatusOr<std::unique_ptr<v1::PeerService::Stub>> NewStub(
      const std::string& party) const;
  // One unary call with `timeout`, tracked; on `stub` if given, else on
  // the shared one.
  template <typename Request, typename Response>
  absl::Status Unary(const std::string& party, absl::Duration timeout,
                     UnaryMethod<Request, Response> method, const Request& request,
                     Response* response, v1::PeerService::Stub* stub = nullptr);
  // False once CancelAll ran: make no call.
  bool Track(grpc::ClientContext* ctx, absl::Duration chunk_deadline);
  void Touch(grpc::ClientContext* ctx, absl::Duration chunk_deadline);
  // True if the watchdog cancelled the call.
  bool Untrack(grpc::ClientContext* ctx);
  void Watch();  // The watchdog thread.

  const NodeSetup* setup_;
  const Clock* const clock_;
  mutable absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<v1::PeerService::Stub>> stubs_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> unbatched_ ABSL_GUARDED_BY(mu_);
  // A std::mutex, not an absl::Mutex: the watchdog's timed wait must be on
  // the monotonic clock, and absl's (this LTS) are on the wall clock.
  std::mutex calls_mu_;
  std::condition_variable calls_cv_;               // Signals a stop.
  std::map<grpc::ClientContext*, Tracked> calls_;  // Guarded by calls_mu_.
  bool stopping_ = false;                          // Guarded by calls_mu_.
  std::thread watchdog_;  // Started by the first tracked chunk deadline.
};

}  // namespace comity

#endif  // COMITY_SERVER_GRPC_GRPC_PEER_TRANSPORT_H_
