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
#include <vector>

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

// One of this node's previous signing keys (previous_signing_keys).
struct PreviousSigningKey {
  std::string key_id;
  std::unique_ptr<SigningKey> key;  // Null when only the public key is configured.
  std::string public_key;           // 32 raw bytes.
  KeyValidity validity;
};

// A checked configuration with its files read and keys parsed. Immutable,
// except for key_ring (below).
struct NodeSetup {
  v1::NodeConfig config;  // Paths resolved, defaults filled in.
  std::string tls_cert_pem;
  std::string tls_key_pem;
  std::string operator_ca_pem;
  std::unique_ptr<CaVerifier> operator_ca;
  std::unique_ptr<SigningKey> signing_key;
  KeyValidity signing_key_validity;
  std::vector<PreviousSigningKey> previous_signing_keys;  // Oldest first.
  // Every peer's keys and this node's own (current and previous). KeyRing
  // is thread-safe; the node adds the keys its peers announce at run time
  // (docs/keys.md), hence mutable in an otherwise immutable setup.
  mutable KeyRing key_ring;
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

// Parses a key window time: RFC 3339 with a zone ("2026-01-01T00:00:00Z",
// "2026-01-01T09:00:00+09:00"). `fallback` for an empty string;
// InvalidArgument otherwise.
absl::StatusOr<absl::Time> ParseKeyTime(const std::string& text, absl::Time fallback);

// Parses a ClientConfig text file (relative paths from its directory).
absl::StatusOr<v1::ClientConfig> LoadClientConfig(const std::string& path);

}  // namespace comity

#endif  // COMITY_SERVER_CONFIG_NODE_CONFIG_H_
