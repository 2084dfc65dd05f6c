// Loading and checking a node's configuration (comity.v1.NodeConfig in
// protobuf text format). Every error names the file, the field and the fix,
// so that a wrong configuration fails at start, not at the first request.
//
//   COMITY_ASSIGN_OR_RETURN(std::unique_ptr<NodeSetup> setup,
//                           LoadNodeConfig("/etc/comity/fr.conf"));
#ifndef COMITY_SERVER_CONFIG_NODE_CONFIG_H_
#define COMITY_SERVER_CONFIG_NODE_CONFIG_H_

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "comity/v1/config.pb.h"
#include "server/core/envelope.h"
#include "server/crypto/ed25519.h"
#include "server/crypto/x509_identity.h"
#include "server/treaty/library.h"

namespace comity {

struct PeerSetup {
  std::string party;
  std::string address;
  std::string ca_pem;                 // Trust root for this peer's certificates.
  std::unique_ptr<CaVerifier> ca;     // The same, ready to check a certificate.
};

// A checked configuration with its files read and keys parsed. Immutable.
struct NodeSetup {
  v1::NodeConfig config;  // Paths resolved, defaults filled in.
  std::string tls_cert_pem;
  std::string tls_key_pem;
  std::string operator_ca_pem;
  std::unique_ptr<CaVerifier> operator_ca;
  std::unique_ptr<SigningKey> signing_key;
  KeyRing key_ring;  // Every peer's keys and this node's own.
  std::map<std::string, PeerSetup> peers;  // By party.
  std::unique_ptr<TreatyLibrary> treaties;

  absl::Duration replay_window() const;
  absl::Duration max_clock_skew() const;
};

// Parses `text` (relative paths are taken from `base_dir`), fills defaults,
// reads and checks the files it names. InvalidArgument / NotFound /
// FailedPrecondition with "<source>: <field>: <problem>; <fix>".
absl::StatusOr<std::unique_ptr<NodeSetup>> ParseNodeConfig(const std::string& text,
                                                          const std::string& source,
                                                          const std::string& base_dir);

// Reads the file at `path` and calls ParseNodeConfig with its directory.
absl::StatusOr<std::unique_ptr<NodeSetup>> LoadNodeConfig(const std::string& path);

// Parses a ClientConfig text file (relative paths from its directory).
absl::StatusOr<v1::ClientConfig> LoadClientConfig(const std::string& path);

// Parses protobuf text format into `msg`, with an error that gives the
// source, line and column of the first problem.
absl::Status ParseTextProto(const std::string& text, const std::string& source,
                            google::protobuf::Message* msg);

}  // namespace comity

#endif  // COMITY_SERVER_CONFIG_NODE_CONFIG_H_
