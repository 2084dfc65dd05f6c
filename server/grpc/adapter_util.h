// Internal to server/grpc/: what every adapter does the same way.
#ifndef COMITY_SERVER_GRPC_ADAPTER_UTIL_H_
#define COMITY_SERVER_GRPC_ADAPTER_UTIL_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "comity/v1/peer.pb.h"
#include "google/protobuf/message.h"
#include "server/grpc/status_util.h"
#include "server/node/evidence_exchange.h"
#include "server/node/request_intake.h"
#include "server/util/executor.h"

namespace comity {

// What the node needs to know of a call: the TLS client's certificate, its
// address, the size of the message.
inline CallInfo CallOf(grpc::CallbackServerContext* ctx,
                       const google::protobuf::Message& msg) {
  auto [cert, chain] = PeerCertificatePem(*ctx);
  return CallInfo{std::move(cert), std::move(chain), ctx->peer(), msg.ByteSizeLong()};
}

// Finishes a unary call with `status`.
inline grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* ctx,
                                      const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

// Runs `body` (returning absl::Status, filling the response) on `pool`,
// then finishes the call with its status: gRPC's callback threads only
// hand the call over, and never wait on a commit, a signature or a lock.
template <typename Body>
grpc::ServerUnaryReactor* Offload(grpc::CallbackServerContext* ctx, Executor* pool,
                                  Body body) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  pool->Schedule([reactor, body = std::move(body)]() mutable {
    reactor->Finish(ToGrpcStatus(body()));
  });
  return reactor;
}

// Streams an evidence file chunk by chunk from an EvidenceReader (one read
// per write, so memory stays bounded), or finishes with the error that kept
// the reader from being opened. Deletes itself when done.
class EvidenceWriter final : public grpc::ServerWriteReactor<v1::EvidenceChunk> {
 public:
  explicit EvidenceWriter(absl::StatusOr<std::unique_ptr<EvidenceReader>> reader) {
    if (!reader.ok()) {
      Finish(ToGrpcStatus(reader.status()));
      return;
    }
    reader_ = *std::move(reader);
    Next();
  }
  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the other side went away"));
      return;
    }
    Next();
  }
  void OnDone() override { delete this; }

 private:
  void Next() {
    absl::StatusOr<std::string> chunk = reader_->Next();
    if (!chunk.ok() || chunk->empty()) {
      Finish(ToGrpcStatus(chunk.status()));
      return;
    }
    chunk_.set_data(*std::move(chunk));
    StartWrite(&chunk_);
  }
  std::unique_ptr<EvidenceReader> reader_;
  v1::EvidenceChunk chunk_;
};

// Finishes a server-streaming call with an error. Deletes itself.
template <typename T>
class ErrorWriter final : public grpc::ServerWriteReactor<T> {
 public:
  explicit ErrorWriter(const absl::Status& st) { this->Finish(ToGrpcStatus(st)); }
  void OnDone() override { delete this; }
};

}  // namespace comity

#endif  // COMITY_SERVER_GRPC_ADAPTER_UTIL_H_
