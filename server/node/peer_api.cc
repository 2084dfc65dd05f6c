#include "server/node/peer_api.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "server/audit/receipt.h"
#include "server/core/peer_limits.h"
#include "server/crypto/sha256.h"
#include "server/node/node.h"
#include "server/util/status_macros.h"

namespace comity {
namespace {

const absl::Status& StatusOf(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& s) {
  return s.status();
}

}  // namespace

template <typename T, typename Fn>
T PeerApi::Call(const CallInfo& call, const char* method, const std::string& payload_sha256,
                Fn fn) {
  absl::StatusOr<std::string> peer = node_->intake().AdmitPeer(call, method);
  if (!peer.ok()) return peer.status();
  T result = fn(*peer);
  const absl::Status& st = StatusOf(result);
  if (!st.ok()) node_->intake().RecordRefusal(call, "peer:" + *peer, method, payload_sha256, st);
  return result;
}

absl::StatusOr<v1::SignedEnvelope> PeerApi::DeliverRequest(const CallInfo& call,
                                                           const v1::SignedEnvelope& request) {
  return Call<absl::StatusOr<v1::SignedEnvelope>>(
      call, "DeliverRequest", Sha256(request.payload()),
      [&](const std::string& peer) -> absl::StatusOr<v1::SignedEnvelope> {
        COMITY_RETURN_IF_ERROR(CheckEnvelopeBounds(request));
        return node_->intake().ReceiveRequest(peer, request);
      });
}

absl::StatusOr<std::vector<absl::StatusOr<v1::SignedEnvelope>>> PeerApi::DeliverRequests(
    const CallInfo& call, const std::vector<const v1::SignedEnvelope*>& requests) {
  constexpr char kMethod[] = "DeliverRequests";
  RequestIntake& intake = node_->intake();
  absl::StatusOr<std::string> peer = intake.AdmitPeer(
      call, kMethod, static_cast<uint32_t>(std::min<size_t>(requests.size(), UINT32_MAX)));
  if (!peer.ok()) return peer.status();
  if (requests.empty() || requests.size() > static_cast<size_t>(kMaxDeliveryBatch)) {
    absl::Status bad = absl::InvalidArgumentError(
        absl::StrCat("DeliverRequests carries ", requests.size(),
                     " requests; a batch holds 1 to ", kMaxDeliveryBatch));
    intake.RecordRefusal(call, "peer:" + *peer, kMethod, "", bad);
    return bad;
  }
  // Each request is checked, and refused, on its own: the others go on.
  std::vector<absl::StatusOr<v1::SignedEnvelope>> out(requests.size(),
                                                      absl::UnknownError("not received"));
  std::vector<const v1::SignedEnvelope*> bounded;
  std::vector<size_t> position;
  for (size_t i = 0; i < requests.size(); ++i) {
    absl::Status within = CheckEnvelopeBounds(*requests[i]);
    if (!within.ok()) {
      out[i] = within;
    } else {
      bounded.push_back(requests[i]);
      position.push_back(i);
    }
  }
  std::vector<absl::StatusOr<v1::SignedEnvelope>> received =
      intake.ReceiveRequests(*peer, bounded);
  for (size_t j = 0; j < bounded.size(); ++j) out[position[j]] = std::move(received[j]);
  for (size_t i = 0; i < requests.size(); ++i) {
    if (!out[i].ok()) {
      intake.RecordRefusal(call, "peer:" + *peer, kMethod, Sha256(requests[i]->payload()),
                           out[i].status());
    }
  }
  return out;
}

absl::StatusOr<v1::SignedEnvelope> PeerApi::DeliverTransition(
    const CallInfo& call, const v1::SignedEnvelope& transition) {
  return Call<absl::StatusOr<v1::SignedEnvelope>>(
      call, "DeliverTransition", Sha256(transition.payload()),
      [&](const std::string& peer) -> absl::StatusOr<v1::SignedEnvelope> {
        COMITY_RETURN_IF_ERROR(CheckEnvelopeBounds(transition));
        return node_->cases().ReceiveTransition(peer, transition);
      });
}

absl::StatusOr<v1::SignedEnvelope> PeerApi::ProposeTransition(const CallInfo& call,
                                                              const v1::SignedEnvelope& proposal) {
  return Call<absl::StatusOr<v1::SignedEnvelope>>(
      call, "ProposeTransition", Sha256(proposal.payload()),
      [&](const std::string& peer) -> absl::StatusOr<v1::SignedEnvelope> {
        COMITY_RETURN_IF_ERROR(CheckEnvelopeBounds(proposal));
        return node_->cases().SequenceProposal(peer, proposal);
      });
}

absl::StatusOr<std::unique_ptr<EvidenceReader>> PeerApi::FetchEvidence(
    const CallInfo& call, const std::string& request_id, const std::string& sha256,
    uint64_t offset) {
  // Chunks below the message limit, with room for the message around them.
  const size_t chunk = std::min<size_t>(
      1 << 20, node_->context().config().limits().max_message_bytes() - 1024);
  return Call<absl::StatusOr<std::unique_ptr<EvidenceReader>>>(
      call, "FetchEvidence", sha256,
      [&](const std::string& peer) -> absl::StatusOr<std::unique_ptr<EvidenceReader>> {
        if (request_id.empty() || request_id.size() > PeerLimits::kMaxIdBytes ||
            sha256.size() != PeerLimits::kHashBytes) {
          return absl::InvalidArgumentError(absl::StrCat(
              "FetchEvidence names a request id of 1 to ", PeerLimits::kMaxIdBytes,
              " bytes and a 32-byte SHA-256 (got ", request_id.size(), " and ",
              sha256.size(), " bytes)"));
        }
        return node_->evidence().OpenForPeer(peer, request_id, sha256, offset, chunk);
      });
}

absl::StatusOr<v1::SignedEnvelope> PeerApi::ExchangeTreeHeads(const CallInfo& call,
                                                              const v1::SignedEnvelope& head) {
  return Call<absl::StatusOr<v1::SignedEnvelope>>(
      call, "ExchangeTreeHeads", Sha256(head.payload()),
      [&](const std::string& peer) -> absl::StatusOr<v1::SignedEnvelope> {
        COMITY_RETURN_IF_ERROR(CheckEnvelopeBounds(head));
        return node_->witness().ExchangeTreeHeads(peer, head);
      });
}

absl::StatusOr<std::vector<std::string>> PeerApi::GetConsistencyProof(const CallInfo& call,
                                                                      uint64_t old_size,
                                                                      uint64_t new_size) {
  return Call<absl::StatusOr<std::vector<std::string>>>(
      call, "GetConsistencyProof", "",
      [&](const std::string&) { return node_->witness().ConsistencyProof(old_size, new_size); });
}

absl::Status PeerApi::ReportSplitView(const CallInfo& call, const v1::SignedEnvelope& first,
                                      const v1::SignedEnvelope& second) {
  return Call<absl::Status>(call, "ReportSplitView", Sha256(first.payload()),
                            [&](const std::string& peer) -> absl::Status {
                              COMITY_RETURN_IF_ERROR(CheckEnvelopeBounds(first));
                              COMITY_RETURN_IF_ERROR(CheckEnvelopeBounds(second));
                              return node_->witness().HandleSplitViewReport(peer, first, second);
                            });
}

absl::StatusOr<bool> PeerApi::AnnounceKey(const CallInfo& call,
                                          const v1::AnnounceKeyRequest& request) {
  return Call<absl::StatusOr<bool>>(
      call, "AnnounceKey", Sha256(request.announcement().payload()),
      [&](const std::string& peer) -> absl::StatusOr<bool> {
        COMITY_RETURN_IF_ERROR(CheckEnvelopeBounds(request.announcement()));
        COMITY_RETURN_IF_ERROR(CheckEnvelopeBounds(request.possession()));
        return node_->keys().ReceiveAnnouncement(peer, request);
      });
}

absl::StatusOr<std::optional<v1::SignedEnvelope>> PeerApi::GetHeldHead(const CallInfo& call) {
  return Call<absl::StatusOr<std::optional<v1::SignedEnvelope>>>(
      call, "GetHeldHead", "",
      [&](const std::string& peer) { return node_->witness().HeldHeadOf(peer); });
}

absl::StatusOr<v1::GetSharedRecordsResponse> PeerApi::GetSharedRecords(
    const CallInfo& call, const v1::GetSharedRecordsRequest& request) {
  return Call<absl::StatusOr<v1::GetSharedRecordsResponse>>(
      call, "GetSharedRecords", "",
      [&](const std::string& peer) { return node_->recovery().Share(peer, request); });
}

}  // namespace comity
