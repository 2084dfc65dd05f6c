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

}  // namespace comity

#endif  // COMITY_CLIENT_CONNECTION_H_
