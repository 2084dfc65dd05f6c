// Fuzzes parsing and checking a node configuration
// (server/config/node_config.h: ParseNodeConfig): protobuf text format,
// defaults, addresses, limits, then the files it names (certificates, keys,
// the treaty library) and the peers' keys.
//
// Input: the configuration text. Its relative paths are taken from a
// directory made at start with a fresh test network's files
// (certs/make-network.sh) and one treaty file, so that valid inputs get
// through to the end. Inputs whose paths are absolute or climb out with
// ".." are skipped: the target is the parser, not the machine's files
// (a path to /dev/zero would "hang" any reader).
#include <sys/stat.h>

#include <cstddef>
#include <cstdint>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "comity/v1/config.pb.h"
#include "server/config/node_config.h"
#include "server/util/files.h"
#include "server/util/text_proto.h"
#include "tests/fuzz/fuzz_common.h"

namespace comity::fuzz {
namespace {

constexpr const char* kTreatyFile = "fr-us-mlat-1998.textproto";

struct Network {
  std::string base;     // FR's directory: the configuration's base_dir.
  std::string jp_key;   // JP's public signing key, base64.
};

Network* MakeFiles() {
  auto* n = new Network();
  const std::string net = MakeNetwork({"FR", "JP"});
  n->base = net + "/FR";
  auto pub = ReadFile(net + "/JP/signing.pub");
  Check(pub.ok(), "JP public key");
  n->jp_key = std::string(absl::StripTrailingAsciiWhitespace(*pub));
  auto ca = ReadFile(net + "/JP/ca.pem");
  Check(ca.ok(), "JP CA");
  Check(WriteFileAtomically(n->base + "/peer-ca.pem", *ca, 0644).ok(), "peer-ca.pem");
  auto treaty = ReadFile(absl::StrCat(SourceDir(), "/deploy/treaties/", kTreatyFile));
  Check(treaty.ok(), kTreatyFile);
  Check(::mkdir((n->base + "/treaties").c_str(), 0755) == 0, "treaties dir");
  Check(WriteFileAtomically(absl::StrCat(n->base, "/treaties/", kTreatyFile), *treaty, 0644)
            .ok(),
        "treaty copy");
  return n;
}

Network& Files() {
  static Network* n = MakeFiles();
  return *n;
}

bool SafePath(const std::string& path) {
  return !absl::StartsWith(path, "/") && !absl::StrContains(path, "..");
}

// True if every file or directory the configuration names stays under the
// base directory.
bool PathsStayInside(const v1::NodeConfig& c) {
  if (!SafePath(c.treaties_dir()) || !SafePath(c.tls().cert_file()) ||
      !SafePath(c.tls().key_file()) || !SafePath(c.tls().operator_ca_file()) ||
      !SafePath(c.signing_key().private_key_file())) {
    return false;
  }
  for (const v1::PeerConfig& p : c.peers()) {
    if (!SafePath(p.ca_file())) return false;
  }
  return true;
}

}  // namespace
}  // namespace comity::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  using namespace comity;
  using namespace comity::fuzz;
  InitializeFuzzer([](SeedWriter& seeds) {
    const Network& n = Files();
    const std::string valid = NodeConfigText("FR", "JP", "peer-ca.pem", n.jp_key, "treaties");
    Check(ParseNodeConfig(valid, "seed", n.base).ok(), "the seed configuration is valid");
    seeds.Add("valid.conf", valid);
    seeds.Add("full.conf",
              valid + "audit { head_interval_seconds: 30 }\n"
                      "service_levels { acknowledge_hours: 48 decide_days: 20 }\n"
                      "evidence { max_file_bytes: 1073741824 }\n"
                      "peers { party: \"DE\" address: \"[::1]:7404\" ca_file: \"peer-ca.pem\"\n"
                      "  signing_keys { key_id: \"DE-1\" ed25519_public_key: \"" +
                          n.jp_key + "\" } }\n");
    seeds.Add("bad-address.conf",
              NodeConfigText("FR", "JP", "peer-ca.pem", n.jp_key, "treaties") +
                  "peer_listen_address: \"localhost\"\n");
    seeds.Add("bad-key.conf", NodeConfigText("FR", "JP", "peer-ca.pem", "AAAA", "treaties"));
    seeds.Add("empty.conf", "");
    seeds.Dictionary(TextFormatTokens(v1::NodeConfig::descriptor()));
  });
  Files();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace comity;
  using namespace comity::fuzz;
  const std::string text = Bytes(data, size);
  v1::NodeConfig parsed;
  if (ParseTextProto(text, "fuzz.conf", &parsed).ok() && !PathsStayInside(parsed)) return 0;
  const Network& n = Files();
  auto setup = ParseNodeConfig(text, "fuzz.conf", n.base);
  if (setup.ok()) {
    const NodeSetup& s = **setup;
    if (s.signing_key == nullptr || s.treaties == nullptr || s.peers.empty() ||
        s.key_ring.Find(s.config.party(), s.config.signing_key().key_id()) == nullptr) {
      Fail("ParseNodeConfig accepted a configuration without its key, treaties or peers");
    }
    for (const auto& [party, peer] : s.peers) {
      if (peer.ca == nullptr || !s.key_ring.HasParty(party) || party == s.config.party()) {
        Fail(absl::StrCat("ParseNodeConfig accepted peer ", party, " without its CA or keys"));
      }
    }
  }
  return 0;
}
