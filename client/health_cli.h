// `comity health`: asks the node's operator listener for its health
// (grpc.health.v1.Health/Check, over the operator's mutual TLS) and exits 0
// only when it is SERVING. Made for container and systemd probes, which use
// a certificate without roles (deploy/k8s, deploy/docker-compose.yml):
//
//   comity --connect /etc/comity/probe.conf health [--service comity.v1.OperatorService]
//
// CheckHealth is the same call on any channel (tests use it on the peer
// listener too).
#ifndef COMITY_CLIENT_HEALTH_CLI_H_
#define COMITY_CLIENT_HEALTH_CLI_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/cli.h"

namespace comity {

// grpc.health.v1.HealthCheckResponse.ServingStatus, by number.
enum class HealthStatus { kUnknown = 0, kServing = 1, kNotServing = 2, kServiceUnknown = 3 };

// "SERVING", "NOT_SERVING", ...
const char* HealthStatusName(HealthStatus status);

// Calls grpc.health.v1.Health/Check for `service` ("" for the server as a
// whole) with the given deadline. A gRPC failure comes back as the
// absl::Status of the same code and message (NOT_FOUND: the server does not
// know `service`; UNAVAILABLE: not reachable). Thread-safe.
absl::StatusOr<HealthStatus> CheckHealth(const std::shared_ptr<grpc::Channel>& channel,
                                         const std::string& service, absl::Duration timeout);

// `args` are the whole command line without "health" ([--connect FILE]
// [--json] [--service NAME] [--timeout-ms N]). Exit codes as RunCli: 0 only
// for SERVING.
int RunHealthCli(const std::vector<std::string>& args, const GetEnv& env, std::ostream& out,
                 std::ostream& err);

}  // namespace comity

#endif  // COMITY_CLIENT_HEALTH_CLI_H_
