#include "server/grpc/node_server.h"

#include <grpc/support/time.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/resource_quota.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "server/grpc/grpc_peer_transport.h"
#include "server/grpc/services.h"
#include "server/store/open_store.h"
#include "server/util/executor.h"
#include "server/util/files.h"
#include "server/util/listen_check.h"
#include "server/util/log.h"
#include "server/util/status_macros.h"

namespace comity {
namespace {

// gRPC's own hard cap, above the limit the handlers enforce (and log), so
// that oversized messages are normally refused by our code with an
// explanation; anything beyond this is cut off by gRPC itself.
constexpr int kHardCapFactor = 4;

// Threads per listener for the work of its calls. They mostly wait (on the
// store's group commit, on a lane's attempt): more than the cores, so that
// commits from many calls share one fsync.
constexpr int kCallThreads = 8;

// What one listener's connections may hold in memory at once, as gRPC
// accounts it (read and TLS buffers, messages being received): at least
// kMinQuotaBytes, and room for two messages of the receive limit. gRPC 1.51
// lets a message in as fast as the sender writes and checks it against the
// receive limit only once the whole message is in, so without a quota a
// 1 GB message is held whole before it is refused. Over the quota, gRPC
// cancels streams of the listener (RESOURCE_EXHAUSTED, HTTP/2
// ENHANCE_YOUR_CALM) and closes its idle connections until it is under
// again. docs/envelope.md, "Memory bound", has the measurements behind the
// numbers.
constexpr size_t kMinQuotaBytes = size_t{64} << 20;
// Streams a client may have open on one connection: a partner's default
// delivery.max_in_flight. A gRPC client queues the streams beyond it (under
// their deadlines), so with default limits one connection's largest
// legitimate messages (16 x 1 MiB) stay well under the quota. With 256,
// 500 messages of 1 MiB on one connection took 158-237 MB; with 16, 36-52.
constexpr int kMaxConcurrentStreams = 16;

// Bounds what `builder`'s listener holds while it receives: messages of at
// most `receive_limit` bytes, a resource quota of its own named `name` (so
// that calls to one listener cannot crowd out the other's),
// kMaxConcurrentStreams, and no BDP probing (a connection's window does not
// grow with the bandwidth; 10-30 % less at the peak of many messages at
// once).
void BoundMemory(grpc::ServerBuilder& builder, const std::string& name,
                 int receive_limit) {
  builder.SetMaxReceiveMessageSize(receive_limit);
  builder.SetResourceQuota(grpc::ResourceQuota(name).Resize(
      std::max(kMinQuotaBytes, 2 * static_cast<size_t>(receive_limit))));
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, kMaxConcurrentStreams);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
}

// Mutual TLS whose certificate, key and client CAs are re-read from
// their files every tls.reload_interval_seconds: a certificate replaced on
// disk is presented in the next handshakes, without a restart and without
// closing the listener (docs/keys.md, "TLS certificates").
std::shared_ptr<grpc::ServerCredentials> MutualTls(const NodeSetup& setup,
                                                   const std::string& client_ca_file) {
  const v1::TlsConfig& tls = setup.config.tls();
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      tls.key_file(), tls.cert_file(), client_ca_file, tls.reload_interval_seconds());
  grpc::experimental::TlsServerCredentialsOptions opts(provider);
  opts.watch_root_certs();
  opts.watch_identity_key_cert_pairs();
  opts.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  return grpc::experimental::TlsServerCredentials(opts);
}

// The standard health service (grpc.health.v1.Health) and server reflection
// (grpc.reflection.v1alpha.ServerReflection) on every listener. Both are
// process-wide switches that gRPC applies to each ServerBuilder built after
// them, so they are thrown once, before the first listener. They are served
// behind the same mutual TLS as everything else: a caller needs a
// certificate the listener accepts, but no role (deploy/k8s probes with a
// role-less operator certificate, `comity health`).
void EnableHealthAndReflection() {
  static std::once_flag once;
  std::call_once(once, [] {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  });
}

// Sets the overall status ("") and that of each named service of `server`.
void SetServing(grpc::Server* server, absl::Span<const char* const> services, bool serving) {
  if (server == nullptr) return;
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  if (health == nullptr) return;
  health->SetServingStatus(serving);
  for (const char* service : services) health->SetServingStatus(service, serving);
}

constexpr const char* kPeerServices[] = {"comity.v1.PeerService"};
constexpr const char* kOperatorServices[] = {"comity.v1.OperatorService",
                                             "comity.v1.AuditService"};

// Why the listener of `field` could not bind `address`, for the operator:
// the address, the cause, and for a port in use the command that shows who
// holds it.
absl::Status ListenError(absl::string_view field, const std::string& address) {
  absl::Status why = CheckCanListen(address);
  if (why.ok()) {  // gRPC failed for another reason, logged just before.
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", field, " ", address, " (gRPC's log above says why)"));
  }
  if (absl::IsUnavailable(why)) {
    return absl::UnavailableError(absl::StrCat(field, " ", why.message(),
                                               " (is another comityd running? `ss -ltnp 'sport = :",
                                               PortOf(address), "'`)"));
  }
  return absl::Status(why.code(), absl::StrCat(field, " ", why.message()));
}

// Builds and starts the listener of `field`. gRPC on Linux sets SO_REUSEPORT
// by default, and two processes with it share a port, each taking some of
// the connections: off, so that a port in use is an error. The address is
// also checked first, since gRPC succeeds if it binds any one of the
// addresses a host name resolves to.
absl::StatusOr<std::unique_ptr<grpc::Server>> Listen(grpc::ServerBuilder& builder,
                                                     absl::string_view field,
                                                     const std::string& address,
                                                     const int* port) {
  if (!CheckCanListen(address).ok()) return ListenError(field, address);
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || *port == 0) {
    if (server != nullptr) server->Shutdown(std::chrono::system_clock::now());
    return ListenError(field, address);
  }
  return server;
}

}  // namespace

NodeServer::NodeServer() = default;

NodeServer::~NodeServer() { Shutdown(absl::ZeroDuration()); }

absl::StatusOr<std::unique_ptr<NodeServer>> NodeServer::Start(const NodeSetup* setup,
                                                              const Clock* clock) {
  const v1::NodeConfig& c = setup->config;
  if (absl::Status made = EnsureDir(c.data_dir()); !made.ok()) {
    return absl::FailedPreconditionError(absl::StrCat("data_dir: ", made.message()));
  }
  COMITY_ASSIGN_OR_RETURN(std::unique_ptr<Store> store, OpenStore(c));
  std::unique_ptr<NodeServer> server(new NodeServer());
  server->transport_ = std::make_unique<GrpcPeerTransport>(setup, clock);
  COMITY_ASSIGN_OR_RETURN(server->node_, Node::Create(setup, std::move(store),
                                                      server->transport_.get(), clock));
  const int limit = static_cast<int>(c.limits().max_message_bytes());
  server->gate_ = std::make_unique<StartGate>();
  Node* node = server->node_.get();
  const StartGate* gate = server->gate_.get();
  server->peer_pool_ = std::make_unique<Executor>("comity-peer", kCallThreads);
  server->operator_pool_ = std::make_unique<Executor>("comity-operator", kCallThreads);
  server->peer_service_ =
      std::make_unique<PeerServiceImpl>(node, gate, server->peer_pool_.get());
  server->operator_service_ =
      std::make_unique<OperatorServiceImpl>(node, gate, server->operator_pool_.get());
  server->audit_service_ = std::make_unique<AuditServiceImpl>(node, gate);

  // At every start, before the node signs anything, its log is checked
  // against the heads its peers hold; a node behind them (restored, rolled
  // back) fetches back from them what they hold of its cases
  // (docs/backup.md).
  std::optional<absl::Time> behind_since;
  COMITY_RETURN_IF_ERROR(server->node_->backup().CheckLogAgainstPeers(&behind_since));
  if (behind_since.has_value()) {
    COMITY_RETURN_IF_ERROR(
        server->node_->recovery().RecoverFromPeers(*behind_since).status());
  }
  EnableHealthAndReflection();

  // The peer listener accepts a certificate from any peer's CA (which
  // party it speaks for is checked per call): they are pooled in one file,
  // which the TLS stack watches like the others.
  std::string peer_cas;
  for (const auto& [party, peer] : setup->peers) absl::StrAppend(&peer_cas, peer.ca_pem, "\n");
  const std::string peer_cas_file = c.data_dir() + "/peer-cas.pem";
  COMITY_RETURN_IF_ERROR(WriteFileAtomically(peer_cas_file, peer_cas, 0644));

  // Every port is bound before the node starts: one that another process
  // holds stops the start here, before the node records a start in its
  // audit log or contacts a peer. Calls that reach a listener before the
  // node has started are refused by the gate (UNAVAILABLE), so the node
  // still logs its start before it serves anyone. On an error below, the
  // destructor closes what was bound.
  grpc::ServerBuilder peer_builder;
  peer_builder.AddListeningPort(c.peer_listen_address(), MutualTls(*setup, peer_cas_file),
                                &server->peer_port_);
  peer_builder.RegisterService(server->peer_service_.get());
  BoundMemory(peer_builder, "comity peer listener", limit * kHardCapFactor);
  peer_builder.SetMaxSendMessageSize(limit);
  COMITY_ASSIGN_OR_RETURN(server->peer_server_,
                          Listen(peer_builder, "peer_listen_address", c.peer_listen_address(),
                                 &server->peer_port_));
  // gRPC's default health service starts out SERVING; not until the node
  // has started.
  SetServing(server->peer_server_.get(), kPeerServices, false);

  grpc::ServerBuilder op_builder;
  op_builder.AddListeningPort(c.operator_listen_address(),
                              MutualTls(*setup, c.tls().operator_ca_file()),
                              &server->operator_port_);
  op_builder.RegisterService(server->operator_service_.get());
  op_builder.RegisterService(server->audit_service_.get());
  BoundMemory(op_builder, "comity operator listener", limit);
  op_builder.SetMaxSendMessageSize(limit * kHardCapFactor);
  COMITY_ASSIGN_OR_RETURN(server->operator_server_,
                          Listen(op_builder, "operator_listen_address",
                                 c.operator_listen_address(), &server->operator_port_));
  SetServing(server->operator_server_.get(), kOperatorServices, false);

  if (!c.metrics_listen_address().empty()) {  // docs/metrics.md
    if (absl::Status free = CheckCanListen(c.metrics_listen_address()); !free.ok()) {
      return ListenError("metrics_listen_address", c.metrics_listen_address());
    }
    COMITY_ASSIGN_OR_RETURN(server->metrics_port_,
                            server->node_->metrics().Serve(c.metrics_listen_address()));
  }

  // The node logs its start before any call reaches it.
  server->node_->Start();
  server->gate_->Open();
  server->started_ = true;
  SetServing(server->peer_server_.get(), kPeerServices, true);
  SetServing(server->operator_server_.get(), kOperatorServices, true);
  LogEvent(LogLevel::kInfo, "node_started",
           {{"party", c.party()},
            {"peer_port", absl::StrCat(server->peer_port_)},
            {"operator_port", absl::StrCat(server->operator_port_)},
            {"metrics_port", absl::StrCat(server->metrics_port_)},
            {"data_dir", c.data_dir()},
            {"store", StoreDescription(c)}});
  return server;
}

void NodeServer::Shutdown(absl::Duration grace) {
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  // A start that failed half way (a port in use) closes what it bound
  // without the shutdown events: nothing had started.
  const bool listening = started_;
  // On the monotonic clock: a step of the wall clock changes neither the
  // grace nor the time the stop is said to have taken.
  const auto start = std::chrono::steady_clock::now();
  const gpr_timespec deadline = gpr_time_add(
      gpr_now(GPR_CLOCK_MONOTONIC),
      gpr_time_from_micros(absl::ToInt64Microseconds(grace), GPR_TIMESPAN));
  if (listening) {
    LogEvent(LogLevel::kInfo, "shutdown_started",
             {{"grace_ms", absl::StrCat(absl::ToInt64Milliseconds(grace))}});
  }
  // Load balancers and probes see NOT_SERVING first; then both listeners
  // refuse new calls and the calls in flight have until `deadline` to
  // finish (after it gRPC cancels them). Submissions in flight wait for the
  // delivery worker, so the node stops only after the listeners.
  SetServing(operator_server_.get(), kOperatorServices, false);
  SetServing(peer_server_.get(), kPeerServices, false);
  if (operator_server_) operator_server_->Shutdown(deadline);
  if (peer_server_) peer_server_->Shutdown(deadline);
  if (operator_pool_) operator_pool_->Stop();
  if (peer_pool_) peer_pool_->Stop();
  if (node_) node_->metrics().StopServing();
  if (node_) node_->Stop();
  if (listening) {
    const absl::Duration took = absl::FromChrono(std::chrono::steady_clock::now() - start);
    LogEvent(LogLevel::kInfo, "shutdown_complete",
             {{"duration_ms", absl::StrCat(absl::ToInt64Milliseconds(took))},
              // false: calls still running at the deadline were cancelled.
              {"within_grace", took <= grace ? "true" : "false"}});
  }
}

void NodeServer::Wait() {
  {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&shut_down_));
  }
  if (peer_server_) peer_server_->Wait();
  if (operator_server_) operator_server_->Wait();
}

}  // namespace comity
