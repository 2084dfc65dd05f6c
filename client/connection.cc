#include "client/connection.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/config/node_config.h"
#include "server/util/files.h"
#include "server/util/status_macros.h"

namespace comity {

absl::StatusOr<NodeConnection> ConnectToNode(const ParsedArgs& args, const GetEnv& env) {
  std::string path = args.Get("connect", env("COMITY_CONNECT"));
  if (path.empty()) {
    return absl::InvalidArgumentError(
        "no node to talk to: pass --connect FILE (a comity.v1.ClientConfig) or set "
        "COMITY_CONNECT");
  }
  COMITY_ASSIGN_OR_RETURN(v1::ClientConfig config, LoadClientConfig(path));
  grpc::SslCredentialsOptions opts;
  COMITY_ASSIGN_OR_RETURN(opts.pem_root_certs, ReadFile(config.ca_file()));
  COMITY_ASSIGN_OR_RETURN(opts.pem_cert_chain, ReadFile(config.cert_file()));
  COMITY_ASSIGN_OR_RETURN(opts.pem_private_key, ReadPrivateFile(config.key_file()));
  grpc::ChannelArguments channel_args;
  channel_args.SetMaxReceiveMessageSize(64 << 20);
  // A fixed HTTP/2 window, as on the node's peer channels: a long stream
  // (an audit export, an evidence download) that the CLI writes out more
  // slowly than the node sends it waits in the node, not in the CLI's
  // memory (gRPC's probing otherwise grows the window with the link).
  channel_args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  channel_args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 8 << 20);
  NodeConnection c;
  c.address = config.address();
  c.channel = grpc::CreateCustomChannel(c.address, grpc::SslCredentials(opts), channel_args);
  return c;
}

bool NodeUnreachable(const grpc::Status& status) {
  // The node's own answers about a peer it cannot reach, or about its own
  // shutdown, come with the node's message: the node itself was reached.
  const bool from_node = absl::StartsWith(status.error_message(), "peer ") ||
                         absl::StartsWith(status.error_message(), "node is ");
  return !from_node && (status.error_code() == grpc::StatusCode::UNAVAILABLE ||
                        status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED);
}

CliError RpcCliError(const std::string& address, const grpc::Status& status) {
  CliError e;
  e.message = DescribeRpcError(address, status);
  if (NodeUnreachable(status)) {
    e.code = kExitUnreachable;
    e.hint = "'comity health' says whether the node serves; the address is the --connect "
             "file's";
    return e;
  }
  e.code = kExitFailure;
  switch (status.error_code()) {
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::UNAUTHENTICATED:
      e.hint = "your operator certificate lacks the role this needs (docs/cli.md)";
      break;
    case grpc::StatusCode::NOT_FOUND:
      e.hint = "'comity list' shows the requests this node holds";
      break;
    default:
      break;
  }
  return e;
}

std::string DescribeRpcError(const std::string& address, const grpc::Status& status) {
  std::string code =
      absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code()));
  if (NodeUnreachable(status)) {
    return absl::StrCat("cannot reach the node at ", address, " (", code, ": ",
                        status.error_message(),
                        "); is comityd running, and are the --connect files right?");
  }
  return absl::StrCat("node refused: ", code, ": ", status.error_message());
}

}  // namespace comity
