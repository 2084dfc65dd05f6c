// gRPC adapters: each handler passes the caller's TLS certificate and the
// message to the node's PeerApi or OperatorApi (which authenticate, admit,
// call one duty and audit refusals), and converts the result back. No
// logic lives here: peer_service.cc, operator_service.cc,
// audit_service.cc.
#ifndef COMITY_SERVER_GRPC_SERVICES_H_
#define COMITY_SERVER_GRPC_SERVICES_H_

#include <atomic>
#include <cstddef>

#include "absl/status/status.h"

#include "comity/v1/operator.grpc.pb.h"
#include "comity/v1/peer.grpc.pb.h"
#include "server/node/node.h"
#include "server/util/executor.h"

namespace comity {

// Whether calls reach the node yet. NodeServer binds its listeners before it
// starts the node, so that a port held by another process stops the start
// before the node records it (docs/configuration.md), and opens the gate
// once the node has started: a call that arrives in between, through a
// closed gate, gets UNAVAILABLE and is not seen by the node. Thread-safe.
class StartGate {
 public:
  void Open() { open_.store(true, std::memory_order_release); }
  absl::Status Check() const {
    return open_.load(std::memory_order_acquire)
               ? absl::OkStatus()
               : absl::UnavailableError("the node is starting; try again");
  }

 private:
  std::atomic<bool> open_{false};
};

// Thread-safe. `node`, `gate` and `pool` must outlive the service.
class PeerServiceImpl final : public v1::PeerService::CallbackService {
 public:
  // The work of each unary call runs on `pool`, never on gRPC's threads.
  PeerServiceImpl(Node* node, const StartGate* gate, Executor* pool)
      : node_(node), gate_(gate), pool_(pool) {}
  grpc::ServerUnaryReactor* DeliverRequest(grpc::CallbackServerContext* ctx,
                                           const v1::DeliverRequestRequest* request,
                                           v1::DeliverRequestResponse* response) override;
  grpc::ServerUnaryReactor* DeliverRequests(grpc::CallbackServerContext* ctx,
                                            const v1::DeliverRequestsRequest* request,
                                            v1::DeliverRequestsResponse* response) override;
  grpc::ServerUnaryReactor* DeliverTransition(grpc::CallbackServerContext* ctx,
                                              const v1::DeliverTransitionRequest* request,
                                              v1::DeliverTransitionResponse* response) override;
  grpc::ServerUnaryReactor* ProposeTransition(grpc::CallbackServerContext* ctx,
                                              const v1::ProposeTransitionRequest* request,
                                              v1::ProposeTransitionResponse* response) override;
  grpc::ServerWriteReactor<v1::EvidenceChunk>* FetchEvidence(
      grpc::CallbackServerContext* ctx, const v1::FetchEvidenceRequest* request) override;
  grpc::ServerUnaryReactor* ExchangeTreeHeads(grpc::CallbackServerContext* ctx,
                                              const v1::ExchangeTreeHeadsRequest* request,
                                              v1::ExchangeTreeHeadsResponse* response) override;
  grpc::ServerUnaryReactor* GetConsistencyProof(
      grpc::CallbackServerContext* ctx, const v1::GetConsistencyProofRequest* request,
      v1::GetConsistencyProofResponse* response) override;
  grpc::ServerUnaryReactor* ReportSplitView(grpc::CallbackServerContext* ctx,
                                            const v1::ReportSplitViewRequest* request,
                                            v1::ReportSplitViewResponse* response) override;
  grpc::ServerUnaryReactor* AnnounceKey(grpc::CallbackServerContext* ctx,
                                        const v1::AnnounceKeyRequest* request,
                                        v1::AnnounceKeyResponse* response) override;
  grpc::ServerUnaryReactor* GetHeldHead(grpc::CallbackServerContext* ctx,
                                        const v1::GetHeldHeadRequest* request,
                                        v1::GetHeldHeadResponse* response) override;
  grpc::ServerUnaryReactor* GetSharedRecords(grpc::CallbackServerContext* ctx,
                                             const v1::GetSharedRecordsRequest* request,
                                             v1::GetSharedRecordsResponse* response) override;

 private:
  Node* node_;
  const StartGate* gate_;
  Executor* pool_;
};

// Thread-safe. `node`, `gate` and `pool` must outlive the service.
class OperatorServiceImpl final : public v1::OperatorService::CallbackService {
 public:
  // The work of each unary call runs on `pool`, never on gRPC's threads.
  OperatorServiceImpl(Node* node, const StartGate* gate, Executor* pool)
      : node_(node), gate_(gate), pool_(pool) {}
  grpc::ServerUnaryReactor* SubmitRequest(grpc::CallbackServerContext* ctx,
                                          const v1::SubmitRequestRequest* request,
                                          v1::SubmitRequestResponse* response) override;
  grpc::ServerUnaryReactor* ApproveRequest(grpc::CallbackServerContext* ctx,
                                           const v1::ApproveRequestRequest* request,
                                           v1::ApproveRequestResponse* response) override;
  grpc::ServerUnaryReactor* DecideRequest(grpc::CallbackServerContext* ctx,
                                          const v1::DecideRequestRequest* request,
                                          v1::DecideRequestResponse* response) override;
  grpc::ServerUnaryReactor* BeginEvidenceUpload(
      grpc::CallbackServerContext* ctx, const v1::BeginEvidenceUploadRequest* request,
      v1::BeginEvidenceUploadResponse* response) override;
  grpc::ServerReadReactor<v1::EvidenceUploadChunk>* UploadEvidence(
      grpc::CallbackServerContext* ctx, v1::UploadEvidenceResponse* response) override;
  grpc::ServerUnaryReactor* ImportEvidence(grpc::CallbackServerContext* ctx,
                                           const v1::ImportEvidenceRequest* request,
                                           v1::ImportEvidenceResponse* response) override;
  grpc::ServerUnaryReactor* RetryEvidence(grpc::CallbackServerContext* ctx,
                                          const v1::RetryEvidenceRequest* request,
                                          v1::RetryEvidenceResponse* response) override;
  grpc::ServerUnaryReactor* ListPeers(grpc::CallbackServerContext* ctx,
                                      const v1::ListPeersRequest* request,
                                      v1::ListPeersResponse* response) override;
  grpc::ServerUnaryReactor* ListOverdue(grpc::CallbackServerContext* ctx,
                                        const v1::ListOverdueRequest* request,
                                        v1::ListOverdueResponse* response) override;
  grpc::ServerWriteReactor<v1::EvidenceChunk>* ExportEvidence(
      grpc::CallbackServerContext* ctx, const v1::ExportEvidenceRequest* request) override;
  grpc::ServerUnaryReactor* ListRequests(grpc::CallbackServerContext* ctx,
                                         const v1::ListRequestsRequest* request,
                                         v1::ListRequestsResponse* response) override;
  grpc::ServerUnaryReactor* ExportCustodyPackage(
      grpc::CallbackServerContext* ctx, const v1::ExportCustodyPackageRequest* request,
      v1::ExportCustodyPackageResponse* response) override;
  grpc::ServerUnaryReactor* GetRequest(grpc::CallbackServerContext* ctx,
                                       const v1::GetRequestRequest* request,
                                       v1::GetRequestResponse* response) override;
  grpc::ServerUnaryReactor* ListKeys(grpc::CallbackServerContext* ctx,
                                     const v1::ListKeysRequest* request,
                                     v1::ListKeysResponse* response) override;
  // Role admin (docs/backup.md).
  grpc::ServerWriteReactor<v1::BackupChunk>* Backup(grpc::CallbackServerContext* ctx,
                                                    const v1::BackupRequest* request) override;

 private:
  Node* node_;
  const StartGate* gate_;
  Executor* pool_;
};

// The audit log, for operators with the auditor role. Thread-safe. `node`
// and `gate` must outlive the service.
class AuditServiceImpl final : public v1::AuditService::CallbackService {
 public:
  AuditServiceImpl(Node* node, const StartGate* gate) : node_(node), gate_(gate) {}
  grpc::ServerUnaryReactor* GetEntries(grpc::CallbackServerContext* ctx,
                                       const v1::GetAuditEntriesRequest* request,
                                       v1::GetAuditEntriesResponse* response) override;
  grpc::ServerUnaryReactor* GetTreeHeads(grpc::CallbackServerContext* ctx,
                                         const v1::GetTreeHeadsRequest* request,
                                         v1::GetTreeHeadsResponse* response) override;
  grpc::ServerUnaryReactor* SignTreeHead(grpc::CallbackServerContext* ctx,
                                         const v1::SignTreeHeadRequest* request,
                                         v1::SignTreeHeadResponse* response) override;
  grpc::ServerUnaryReactor* GetProof(grpc::CallbackServerContext* ctx,
                                     const v1::GetAuditProofRequest* request,
                                     v1::GetAuditProofResponse* response) override;
  grpc::ServerUnaryReactor* Verify(grpc::CallbackServerContext* ctx,
                                   const v1::VerifyAuditLogRequest* request,
                                   v1::VerifyAuditLogResponse* response) override;
  grpc::ServerWriteReactor<v1::AuditBundle>* Export(
      grpc::CallbackServerContext* ctx, const v1::ExportAuditLogRequest* request) override;

 private:
  Node* node_;
  const StartGate* gate_;
};

}  // namespace comity

#endif  // COMITY_SERVER_GRPC_SERVICES_H_
