// The operator's mutual-TLS channel to its own node, from a ClientConfig
// file (--connect FILE or $COMITY_CONNECT), and the one wording of RPC
// errors every command uses.
#ifndef COMITY_CLIENT_CONNECTION_H_
#define COMITY_CLIENT_CONNECTION_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "client/args.h"
#include "client/cli.h"
#include "client/output.h"

namespace comity {

struct NodeConnection {
  std::string address;
  std::shared_ptr<grpc::Channel> channel;
};

// InvalidArgument (mentioning --connect) when no file is named; file errors
// otherwise.
absl::StatusOr<NodeConnection> ConnectToNode(const ParsedArgs& args, const GetEnv& env);

// "cannot reach the node at ..." or "node refused: CODE: message".
std::string DescribeRpcError(const std::string& address, const grpc::Status& status);

// Whether `status` means the node itself did not answer (UNAVAILABLE or
// DEADLINE_EXCEEDED not sent by the node), as opposed to a node's answer.
bool NodeUnreachable(const grpc::Status& status);

// The error a failed call ends a command with: kExitUnreachable when the
// node did not answer, else kExitFailure (the node refused); the message is
// DescribeRpcError's, with a hint.
CliError RpcCliError(const std::string& address, const grpc::Status& status);

}  // namespace comity

#endif  // COMITY_CLIENT_CONNECTION_H_
