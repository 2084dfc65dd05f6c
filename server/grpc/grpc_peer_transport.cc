#include "server/grpc/grpc_peer_transport.h"

#include <grpc/support/time.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "server/grpc/status_util.h"
#include "server/util/status_macros.h"

namespace comity {
namespace {

absl::Status PeerError(const std::string& party, const grpc::Status& status) {
  absl::Status st = FromGrpcStatus(status);
  return absl::Status(st.code(), absl::StrCat("peer ", party, ": ", st.message()));
}

absl::Status Stopping() {
  return absl::CancelledError("the node is stopping: no new calls to peers");
}

// A call deadline `timeout` from now on gRPC's monotonic clock (a
// system_clock deadline is converted when the call starts, and would move
// with a step of the wall clock before that).
gpr_timespec DeadlineIn(absl::Duration timeout) {
  return gpr_time_add(
      gpr_now(GPR_CLOCK_MONOTONIC),
      gpr_time_from_micros(absl::ToInt64Microseconds(timeout), GPR_TIMESPAN));
}

}  // namespace

GrpcPeerTransport::GrpcPeerTransport(const NodeSetup* setup, const Clock* clock)
    : setup_(setup), clock_(clock) {}

GrpcPeerTransport::~GrpcPeerTransport() {
  CancelAll();
  if (watchdog_.joinable()) watchdog_.join();
}

bool GrpcPeerTransport::Track(grpc::ClientContext* ctx, absl::Duration chunk_deadline) {
  std::lock_guard<std::mutex> lock(calls_mu_);
  if (stopping_) return false;
  calls_[ctx] = Tracked{chunk_deadline, false};
  if (chunk_deadline != absl::InfiniteDuration() && !watchdog_.joinable()) {
    watchdog_ = std::thread([this] { Watch(); });
  }
  return true;
}

void GrpcPeerTransport::Touch(grpc::ClientContext* ctx, absl::Duration chunk_deadline) {
  std::lock_guard<std::mutex> lock(calls_mu_);
  auto it = calls_.find(ctx);
  if (it != calls_.end()) it->second.deadline = chunk_deadline;
}

bool GrpcPeerTransport::Untrack(grpc::ClientContext* ctx) {
  std::lock_guard<std::mutex> lock(calls_mu_);
  auto it = calls_.find(ctx);
  bool expired = it != calls_.end() && it->second.expired;
  if (it != calls_.end()) calls_.erase(it);
  return expired;
}

void GrpcPeerTransport::CancelAll() {
  {
    std::lock_guard<std::mutex> lock(calls_mu_);
    stopping_ = true;
    for (auto& [ctx, unused] : calls_) ctx->TryCancel();
  }
  calls_cv_.notify_all();
}

void GrpcPeerTransport::Watch() {
  std::unique_lock<std::mutex> lock(calls_mu_);
  while (!stopping_) {
    absl::Duration next = absl::InfiniteDuration();
    const absl::Duration now = clock_->MonotonicNow();
    for (auto& [ctx, call] : calls_) {
      if (call.expired) continue;
      if (call.deadline <= now) {
        call.expired = true;
        ctx->TryCancel();
      } else {
        next = std::min(next, call.deadline);
      }
    }
    // Woken early by a stop; a new or touched deadline is never earlier
    // than a check a second from now would catch. wait_for measures on
    // std::chrono::steady_clock.
    const absl::Duration wait = std::min(next - now, absl::Seconds(1));
    calls_cv_.wait_for(lock, absl::ToChronoMicroseconds(wait),
                       [this] { return stopping_; });
  }
}

template <typename Request, typename Response>
absl::Status GrpcPeerTransport::Unary(const std::string& party, absl::Duration timeout,
                                      UnaryMethod<Request, Response> method,
                                      const Request& request, Response* response,
                                      v1::PeerService::Stub* own_stub) {
  v1::PeerService::Stub* stub = own_stub;
  if (stub == nullptr) {
    COMITY_ASSIGN_OR_RETURN(stub, StubFor(party));
  }
  grpc::ClientContext ctx;
  ctx.set_deadline(DeadlineIn(timeout));
  if (!Track(&ctx, absl::InfiniteDuration())) return Stopping();
  grpc::Status status = (stub->*method)(&ctx, request, response);
  Untrack(&ctx);
  return status.ok() ? absl::OkStatus() : PeerError(party, status);
}

absl::StatusOr<v1::PeerService::Stub*> GrpcPeerTransport::StubFor(const std::string& party) {
  absl::MutexLock lock(&mu_);
  auto it = stubs_.find(party);
  if (it != stubs_.end()) return it->second.get();
  COMITY_ASSIGN_OR_RETURN(std::unique_ptr<v1::PeerService::Stub> stub, NewStub(party));
  v1::PeerService::Stub* raw = stub.get();
  stubs_.emplace(party, std::move(stub));
  return raw;
}

absl::StatusOr<std::unique_ptr<v1::PeerService::Stub>> GrpcPeerTransport::NewStub(
    const std::string& party) const {
  auto peer = setup_->peers.find(party);
  if (peer == setup_->peers.end()) {
    return absl::FailedPreconditionError(absl::StrCat("no peer ", party, " is configured"));
  }
  // This node's certificate and key, and the peer's CA, re-read from their
  // files every tls.reload_interval_seconds: new connections use a
  // certificate replaced on disk without a restart (docs/keys.md).
  const v1::TlsConfig& tls = setup_->config.tls();
  const v1::PeerConfig* peer_config = nullptr;
  for (const v1::PeerConfig& p : setup_->config.peers()) {
    if (p.party() == party) peer_config = &p;
  }
  if (peer_config == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("no peer ", party, " is configured"));
  }
  grpc::experimental::TlsChannelCredentialsOptions opts;
  opts.set_certificate_provider(
      std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
          tls.key_file(), tls.cert_file(), peer_config->ca_file(),
          tls.reload_interval_seconds()));
  opts.watch_root_certs();
  opts.watch_identity_key_cert_pairs();
  grpc::ChannelArguments args;
  const int limit = static_cast<int>(setup_->config.limits().max_message_bytes());
  args.SetMaxReceiveMessageSize(limit);
  args.SetMaxSendMessageSize(limit);
  // Bound what a peer can queue in this node's memory (evidence streams):
  // a fixed HTTP/2 window instead of one that grows with the link.
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 8 << 20);
  // The lanes back off themselves (delivery.retry_*_ms); gRPC's own
  // reconnect backoff (1 s growing to 120 s by default) would refuse their
  // probes locally after a peer is back, or after a call made while it was
  // down (the log check at start). Kept within the lanes' bounds.
  const int initial = static_cast<int>(
      std::clamp<uint32_t>(setup_->config.delivery().retry_initial_ms(), 50, 1000));
  const int most = static_cast<int>(std::clamp<uint32_t>(
      setup_->config.delivery().retry_max_ms(), static_cast<uint32_t>(initial), 60000));
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, initial);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, initial);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, most);
  auto channel =
      grpc::CreateCustomChannel(peer->second.address,
                                grpc::experimental::TlsCredentials(opts), args);
  return v1::PeerService::NewStub(channel);
}

absl::StatusOr<v1::SignedEnvelope> GrpcPeerTransport::DeliverRequest(
    const std::string& party, const v1::SignedEnvelope& request, absl::Duration timeout) {
  v1::DeliverRequestRequest req;
  *req.mutable_request() = request;
  v1::DeliverRequestResponse resp;
  COMITY_RETURN_IF_ERROR(
      Unary(party, timeout, &v1::PeerService::Stub::DeliverRequest, req, &resp));
  return std::move(*resp.mutable_receipt());
}

bool GrpcPeerTransport::Unbatched(const std::string& party) const {
  absl::MutexLock lock(&mu_);
  return unbatched_.count(party) > 0;
}

absl::StatusOr<std::vector<absl::StatusOr<v1::SignedEnvelope>>>
GrpcPeerTransport::DeliverRequests(const std::string& party,
                                   const std::vector<const v1::SignedEnvelope*>& requests,
                                   absl::Duration timeout) {
  if (!Unbatched(party)) {
    v1::DeliverRequestsRequest req;
    req.mutable_requests()->Reserve(static_cast<int>(requests.size()));
    for (const v1::SignedEnvelope* r : requests) *req.add_requests() = *r;
    v1::DeliverRequestsResponse resp;
    absl::Status st =
        Unary(party, timeout, &v1::PeerService::Stub::DeliverRequests, req, &resp);
    if (st.ok()) {
      if (resp.outcomes_size() != static_cast<int>(requests.size())) {
        return absl::DataLossError(absl::StrCat("peer ", party, " answered ",
                                                resp.outcomes_size(), " outcomes for ",
                                                requests.size(), " requests"));
      }
      std::vector<absl::StatusOr<v1::SignedEnvelope>> out;
      out.reserve(requests.size());
      for (v1::DeliveryOutcome& o : *resp.mutable_outcomes()) {
        if (o.code() == 0) {
          out.push_back(std::move(*o.mutable_receipt()));
        } else {
          const auto code = static_cast<absl::StatusCode>(
              o.code() > 0 && o.code() <= 16 ? o.code() : 2 /* UNKNOWN */);
          out.push_back(absl::Status(
              code, absl::StrCat("peer ", party, ": ", o.message().substr(0, 1024))));
        }
      }
      return out;
    }
    if (!absl::IsUnimplemented(st)) return st;
    absl::MutexLock lock(&mu_);
    unbatched_.insert(party);
  }
  return PeerTransport::DeliverRequests(party, requests, timeout);
}

absl::StatusOr<v1::SignedEnvelope> GrpcPeerTransport::DeliverTransition(
    const std::string& party, const v1::SignedEnvelope& transition, absl::Duration timeout) {
  v1::DeliverTransitionRequest req;
  *req.mutable_transition() = transition;
  v1::DeliverTransitionResponse resp;
  COMITY_RETURN_IF_ERROR(
      Unary(party, timeout, &v1::PeerService::Stub::DeliverTransition, req, &resp));
  return std::move(*resp.mutable_ack());
}

absl::StatusOr<v1::SignedEnvelope> GrpcPeerTransport::ProposeTransition(
    const std::string& party, const v1::SignedEnvelope& proposal, absl::Duration timeout) {
  v1::ProposeTransitionRequest req;
  *req.mutable_proposal() = proposal;
  v1::ProposeTransitionResponse resp;
  COMITY_RETURN_IF_ERROR(
      Unary(party, timeout, &v1::PeerService::Stub::ProposeTransition, req, &resp));
  return std::move(*resp.mutable_transition());
}

absl::Status GrpcPeerTransport::FetchEvidence(
    const std::string& party, const std::string& request_id, const std::string& sha256,
    uint64_t offset, const std::function<absl::Status(absl::string_view)>& fn,
    absl::Duration chunk_timeout) {
  auto stub = StubFor(party);
  if (!stub.ok()) return stub.status();
  // No deadline for the whole file (it may take hours); one per chunk, kept
  // by the watchdog.
  grpc::ClientContext ctx;
  if (!Track(&ctx, clock_->MonotonicNow() + chunk_timeout)) return Stopping();
  v1::FetchEvidenceRequest req;
  req.set_request_id(request_id);
  req.set_sha256(sha256);
  req.set_offset(offset);
  auto reader = (*stub)->FetchEvidence(&ctx, req);
  v1::EvidenceChunk chunk;
  absl::Status local;
  while (local.ok() && reader->Read(&chunk)) {
    local = fn(chunk.data());
    Touch(&ctx, clock_->MonotonicNow() + chunk_timeout);
  }
  if (!local.ok()) {
    ctx.TryCancel();
    reader->Finish().IgnoreError();
    Untrack(&ctx);
    return local;
  }
  grpc::Status status = reader->Finish();
  if (Untrack(&ctx)) {
    return absl::DeadlineExceededError(absl::StrCat(
        "peer ", party, ": no evidence chunk for ", absl::FormatDuration(chunk_timeout),
        " (evidence.chunk_timeout_ms); the fetch resumes later where it stopped"));
  }
  return status.ok() ? absl::OkStatus() : PeerError(party, status);
}

absl::StatusOr<v1::SignedEnvelope> GrpcPeerTransport::ExchangeTreeHeads(
    const std::string& party, const v1::SignedEnvelope& our_head, absl::Duration timeout) {
  v1::ExchangeTreeHeadsRequest req;
  *req.mutable_head() = our_head;
  v1::ExchangeTreeHeadsResponse resp;
  COMITY_RETURN_IF_ERROR(
      Unary(party, timeout, &v1::PeerService::Stub::ExchangeTreeHeads, req, &resp));
  return std::move(*resp.mutable_head());
}

absl::StatusOr<std::vector<std::string>> GrpcPeerTransport::GetConsistencyProof(
    const std::string& party, uint64_t old_size, uint64_t new_size, absl::Duration timeout) {
  v1::GetConsistencyProofRequest req;
  req.set_old_size(old_size);
  req.set_new_size(new_size);
  v1::GetConsistencyProofResponse resp;
  COMITY_RETURN_IF_ERROR(
      Unary(party, timeout, &v1::PeerService::Stub::GetConsistencyProof, req, &resp));
  return std::vector<std::string>(resp.hashes().begin(), resp.hashes().end());
}

absl::Status GrpcPeerTransport::ReportSplitView(const std::string& party,
                                                const v1::SignedEnvelope& first,
                                                const v1::SignedEnvelope& second,
                                                absl::Duration timeout) {
  v1::ReportSplitViewRequest req;
  *req.mutable_first() = first;
  *req.mutable_second() = second;
  v1::ReportSplitViewResponse resp;
  return Unary(party, timeout, &v1::PeerService::Stub::ReportSplitView, req, &resp);
}

absl::StatusOr<bool> GrpcPeerTransport::AnnounceKey(const std::string& party,
                                                    const v1::AnnounceKeyRequest& request,
                                                    absl::Duration timeout) {
  v1::AnnounceKeyResponse resp;
  COMITY_RETURN_IF_ERROR(
      Unary(party, timeout, &v1::PeerService::Stub::AnnounceKey, request, &resp));
  return resp.changed();
}

absl::StatusOr<std::optional<v1::SignedEnvelope>> GrpcPeerTransport::GetHeldHead(
    const std::string& party, absl::Duration timeout) {
  // Asked once, at start, possibly before the peer is up: on a channel of
  // its own, so that a refused connection leaves the shared channel out
  // of gRPC's reconnect backoff.
  COMITY_ASSIGN_OR_RETURN(std::unique_ptr<v1::PeerService::Stub> stub, NewStub(party));
  v1::GetHeldHeadResponse resp;
  COMITY_RETURN_IF_ERROR(Unary(party, timeout, &v1::PeerService::Stub::GetHeldHead,
                               v1::GetHeldHeadRequest(), &resp, stub.get()));
  if (!resp.has_head()) return std::optional<v1::SignedEnvelope>();
  return std::optional<v1::SignedEnvelope>(std::move(*resp.mutable_head()));
}

absl::StatusOr<v1::GetSharedRecordsResponse> GrpcPeerTransport::GetSharedRecords(
    const std::string& party, const v1::GetSharedRecordsRequest& request,
    absl::Duration timeout) {
  // Asked at start, like GetHeldHead: on a channel of its own.
  COMITY_ASSIGN_OR_RETURN(std::unique_ptr<v1::PeerService::Stub> stub, NewStub(party));
  v1::GetSharedRecordsResponse resp;
  COMITY_RETURN_IF_ERROR(Unary(party, timeout, &v1::PeerService::Stub::GetSharedRecords,
                               request, &resp, stub.get()));
  return resp;
}

}  // namespace comity
