#include "server/config/node_config.h"

#include <sys/stat.h>

#include <cstdlib>
#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/core/parties.h"
#include "server/util/files.h"
#include "server/util/status_macros.h"
#include "server/util/text_proto.h"

namespace comity {
namespace {

constexpr uint32_t kDefaultMaxMessageBytes = 1 << 20;
constexpr uint32_t kMaxMessageBytesCap = 64 << 20;
constexpr uint32_t kDefaultReplayWindowSeconds = 86400;
constexpr uint32_t kDefaultMaxClockSkewSeconds = 300;
constexpr uint32_t kDefaultAttemptTimeoutMs = 5000;
constexpr uint32_t kDefaultRetryInitialMs = 500;
constexpr uint32_t kDefaultRetryMaxMs = 60000;
constexpr uint32_t kDefaultMaxInFlight = 16;
constexpr uint32_t kMaxInFlightLimit = 256;
constexpr uint32_t kDefaultBatchSize = 32;
constexpr uint32_t kMaxBatchSize = 256;  // kMaxDeliveryBatch (server/audit/receipt.h).

// Builds errors of the form "<source>: <field>: <problem>".
class FieldErrors {
 public:
  explicit FieldErrors(std::string source) : source_(std::move(source)) {}
  absl::Status Invalid(absl::string_view field, absl::string_view problem) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": ", field, ": ", problem));
  }
  // Re-labels a file error with the field that named the file.
  absl::Status Wrap(absl::string_view field, const absl::Status& st) const {
    return absl::Status(st.code(), absl::StrCat(source_, ": ", field, ": ", st.message()));
  }

 private:
  std::string source_;
};

absl::Status CheckAddress(const FieldErrors& err, absl::string_view field,
                          const std::string& address, bool listener = false) {
  if (address.empty()) {
    return err.Invalid(field, "is required (host:port, e.g. \"127.0.0.1:7401\")");
  }
  size_t colon = address.rfind(':');
  uint32_t port = 0;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port) || port > 65535) {
    return err.Invalid(field, absl::StrCat("'", address,
                                           "' is not host:port (e.g. \"127.0.0.1:7401\")"));
  }
  if (port == 0 && !listener) {
    return err.Invalid(field, absl::StrCat("'", address, "' has port 0; name the real port"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadNamed(const FieldErrors& err, absl::string_view field,
                                      const std::string& path, bool is_private) {
  if (path.empty()) return err.Invalid(field, "is required (a file path)");
  auto data = is_private ? ReadPrivateFile(path) : ReadFile(path);
  if (!data.ok()) return err.Wrap(field, data.status());
  return data;
}

void FillDefaults(v1::NodeConfig* c) {
  v1::LimitsConfig* limits = c->mutable_limits();
  if (limits->max_message_bytes() == 0) limits->set_max_message_bytes(kDefaultMaxMessageBytes);
  if (limits->replay_window_seconds() == 0) {
    limits->set_replay_window_seconds(kDefaultReplayWindowSeconds);
  }
  if (limits->max_clock_skew_seconds() == 0) {
    limits->set_max_clock_skew_seconds(kDefaultMaxClockSkewSeconds);
  }
  if (limits->peer_rate_per_second() == 0) limits->set_peer_rate_per_second(2000);
  if (limits->peer_burst() == 0) limits->set_peer_burst(2 * limits->peer_rate_per_second());
  v1::DeliveryConfig* d = c->mutable_delivery();
  if (d->attempt_timeout_ms() == 0) d->set_attempt_timeout_ms(kDefaultAttemptTimeoutMs);
  if (d->retry_initial_ms() == 0) d->set_retry_initial_ms(kDefaultRetryInitialMs);
  if (d->retry_max_ms() == 0) d->set_retry_max_ms(kDefaultRetryMaxMs);
  if (d->max_in_flight() == 0) d->set_max_in_flight(kDefaultMaxInFlight);
  if (d->batch_size() == 0) d->set_batch_size(kDefaultBatchSize);
  if (c->audit().head_interval_seconds() == 0) c->mutable_audit()->set_head_interval_seconds(60);
  v1::ServiceLevels* sl = c->mutable_service_levels();
  if (sl->acknowledge_hours() == 0) sl->set_acknowledge_hours(72);
  if (sl->urgent_acknowledge_hours() == 0) sl->set_urgent_acknowledge_hours(24);
  if (sl->emergency_acknowledge_hours() == 0) sl->set_emergency_acknowledge_hours(2);
  if (sl->decide_days() == 0) sl->set_decide_days(30);
  if (sl->urgent_decide_days() == 0) sl->set_urgent_decide_days(5);
  if (sl->preservation_warning_days() == 0) sl->set_preservation_warning_days(7);
  if (c->tls().reload_interval_seconds() == 0) c->mutable_tls()->set_reload_interval_seconds(60);
  v1::EvidenceConfig* e = c->mutable_evidence();
  if (e->max_file_bytes() == 0) e->set_max_file_bytes(uint64_t{1} << 40);
  if (e->chunk_timeout_ms() == 0) e->set_chunk_timeout_ms(30000);
  if (e->max_fetch_attempts() == 0) e->set_max_fetch_attempts(30);
  if (e->retry_max_ms() == 0) e->set_retry_max_ms(600000);
}

// `path` made absolute and canonical as far as it exists (symbolic links
// resolved), the rest appended lexically.
std::string Canonical(const std::string& path) {
  std::string head = path;
  std::string tail;
  while (!head.empty() && head != "/") {
    char* real = ::realpath(head.c_str(), nullptr);
    if (real != nullptr) {
      std::string out = real;
      std::free(real);
      return tail.empty() ? out : absl::StrCat(out == "/" ? "" : out, tail);
    }
    size_t slash = head.rfind('/');
    if (slash == std::string::npos) break;
    tail = absl::StrCat(head.substr(slash), tail);
    head = slash == 0 ? "/" : head.substr(0, slash);
  }
  return path;
}

bool IsWithin(const std::string& dir, const std::string& path) {
  return path == dir || absl::StartsWith(path, dir == "/" ? dir : dir + "/");
}

// evidence.import_dir: an existing directory that holds none of the node's
// own files, so that no name an operator gives can reach them.
absl::Status CheckImportDir(const FieldErrors& err, const std::string& base_dir,
                            v1::NodeConfig& c) {
  v1::EvidenceConfig* e = c.mutable_evidence();
  if (e->import_dir().empty()) return absl::OkStatus();
  e->set_import_dir(ResolvePath(base_dir, e->import_dir()));
  struct stat st;
  if (::stat(e->import_dir().c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return err.Invalid("evidence.import_dir",
                       absl::StrCat(e->import_dir(),
                                    " is not a directory; create it, or leave the field "
                                    "empty for no server-side imports"));
  }
  const std::string dir = Canonical(e->import_dir());
  std::vector<std::pair<const char*, std::string>> own = {
      {"data_dir", c.data_dir()},
      {"tls.key_file", c.tls().key_file()},
      {"tls.cert_file", c.tls().cert_file()},
      {"tls.operator_ca_file", c.tls().operator_ca_file()},
      {"signing_key.private_key_file", c.signing_key().private_key_file()},
      {"config file directory", base_dir}};
  for (const auto& k : c.previous_signing_keys()) {
    if (!k.private_key_file().empty()) {
      own.push_back({"previous_signing_keys.private_key_file", k.private_key_file()});
    }
  }
  for (const auto& [field, path] : own) {
    if (path.empty()) continue;
    const std::string p = Canonical(path);
    // The directory may not hold the node's files, nor lie inside its data.
    if (IsWithin(dir, p) || (std::string(field) == "data_dir" && IsWithin(p, dir))) {
      return err.Invalid(
          "evidence.import_dir",
          absl::StrCat(e->import_dir(), " overlaps the node's own ", field, " (", path,
                       "); use a directory that holds only evidence to release"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> DecodePublicKey(const FieldErrors& err, const std::string& field,
                                            const std::string& b64) {
  std::string raw;
  if (!absl::Base64Unescape(b64, &raw) || raw.size() != kEd25519PublicKeySize) {
    return err.Invalid(field,
                       "must be the base64 of a 32-byte Ed25519 public key (e.g. the output of "
                       "'openssl pkey -pubin -in pub.pem -outform DER | tail -c 32 | base64')");
  }
  return raw;
}

// The window and revocation of a key entry; `prefix` names it in errors.
absl::StatusOr<KeyValidity> ParseValidity(const FieldErrors& err, const std::string& prefix,
                                          const std::string& not_before,
                                          const std::string& not_after,
                                          const std::string& revoked_at) {
  KeyValidity v;
  const std::pair<const char*, std::pair<const std::string*, absl::Time*>> fields[] = {
      {"not_before", {&not_before, &v.not_before}},
      {"not_after", {&not_after, &v.not_after}},
      {"revoked_at", {&revoked_at, &v.revoked_at}}};
  for (const auto& [name, f] : fields) {
    auto t = ParseKeyTime(*f.first, *f.second);
    if (!t.ok()) return err.Invalid(absl::StrCat(prefix, ".", name), t.status().message());
    *f.second = *t;
  }
  if (v.not_before >= v.not_after) {
    return err.Invalid(absl::StrCat(prefix, ".not_after"),
                       "must be later than not_before (the key would never be valid)");
  }
  return v;
}

}  // namespace

absl::StatusOr<absl::Time> ParseKeyTime(const std::string& text, absl::Time fallback) {
  if (text.empty()) return fallback;
  absl::Time t;
  std::string why;
  if (!absl::ParseTime(absl::RFC3339_full, text, &t, &why)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", text.substr(0, 64), "' is not an RFC 3339 time with a zone (e.g. "
        "\"2026-01-01T00:00:00Z\"): ", why));
  }
  return t;
}

absl::Duration NodeSetup::replay_window() const {
  return absl::Seconds(config.limits().replay_window_seconds());
}

absl::Duration NodeSetup::max_clock_skew() const {
  return absl::Seconds(config.limits().max_clock_skew_seconds());
}

absl::StatusOr<std::unique_ptr<NodeSetup>> ParseNodeConfig(const std::string& text,
                                                          const std::string& source,
                                                          const std::string& base_dir) {
  auto setup = std::make_unique<NodeSetup>();
  v1::NodeConfig& c = setup->config;
  COMITY_RETURN_IF_ERROR(ParseTextProto(text, source, &c));
  FieldErrors err(source);
  FillDefaults(&c);

  if (c.party().empty()) return err.Invalid("party", "is required (e.g. party: \"FR\")");
  if (!IsPartyCode(c.party())) {
    return err.Invalid("party", absl::StrCat("'", c.party(),
                                             "' is not an ISO 3166-1 alpha-2 code (e.g. FR)"));
  }
  COMITY_RETURN_IF_ERROR(CheckAddress(err, "peer_listen_address", c.peer_listen_address(), true));
  COMITY_RETURN_IF_ERROR(
      CheckAddress(err, "operator_listen_address", c.operator_listen_address(), true));
  if (c.peer_listen_address() == c.operator_listen_address() &&
      !absl::EndsWith(c.peer_listen_address(), ":0")) {
    return err.Invalid("operator_listen_address",
                       "must differ from peer_listen_address: peers and operators are "
                       "served on separate listeners");
  }
  if (!c.metrics_listen_address().empty()) {  // Optional: docs/metrics.md.
    COMITY_RETURN_IF_ERROR(
        CheckAddress(err, "metrics_listen_address", c.metrics_listen_address(), true));
    if (!absl::EndsWith(c.metrics_listen_address(), ":0") &&
        (c.metrics_listen_address() == c.peer_listen_address() ||
         c.metrics_listen_address() == c.operator_listen_address())) {
      return err.Invalid("metrics_listen_address",
                         "must differ from peer_listen_address and operator_listen_address: "
                         "metrics are plain HTTP on a port of their own (or leave it empty for "
                         "no metrics endpoint)");
    }
  }
  if (c.data_dir().empty()) return err.Invalid("data_dir", "is required (a directory)");
  c.set_data_dir(ResolvePath(base_dir, c.data_dir()));
  // Not echoed: a URL may hold a password.
  if (!c.database().empty() && !absl::StartsWith(c.database(), "postgresql://") &&
      !absl::StartsWith(c.database(), "postgres://")) {
    return err.Invalid("database",
                       "must be empty (SQLite in data_dir) or a PostgreSQL URL starting "
                       "with postgresql:// (e.g. \"postgresql://comity@db.example:5432/comity\")");
  }
  if (c.limits().max_message_bytes() < 4096 ||
      c.limits().max_message_bytes() > kMaxMessageBytesCap) {
    return err.Invalid("limits.max_message_bytes",
                       absl::StrCat("must be at least 4096 and at most ", kMaxMessageBytesCap,
                                    " (64 MiB); evidence files are not sent as messages"));
  }
  if (c.delivery().retry_max_ms() < c.delivery().retry_initial_ms()) {
    return err.Invalid("delivery.retry_max_ms", "must not be less than retry_initial_ms");
  }
  if (c.delivery().max_in_flight() > kMaxInFlightLimit) {
    return err.Invalid("delivery.max_in_flight",
                       absl::StrCat("must be at most ", kMaxInFlightLimit));
  }
  if (c.delivery().batch_size() > kMaxBatchSize) {
    return err.Invalid("delivery.batch_size", absl::StrCat("must be at most ", kMaxBatchSize));
  }

  // TLS.
  v1::TlsConfig* tls = c.mutable_tls();
  tls->set_cert_file(ResolvePath(base_dir, tls->cert_file()));
  tls->set_key_file(ResolvePath(base_dir, tls->key_file()));
  tls->set_operator_ca_file(ResolvePath(base_dir, tls->operator_ca_file()));
  COMITY_ASSIGN_OR_RETURN(setup->tls_cert_pem,
                          ReadNamed(err, "tls.cert_file", tls->cert_file(), false));
  COMITY_ASSIGN_OR_RETURN(setup->tls_key_pem,
                          ReadNamed(err, "tls.key_file", tls->key_file(), true));
  COMITY_ASSIGN_OR_RETURN(
      setup->operator_ca_pem,
      ReadNamed(err, "tls.operator_ca_file", tls->operator_ca_file(), false));
  {
    auto own = IdentityFromCertPem(setup->tls_cert_pem);
    if (!own.ok()) return err.Wrap("tls.cert_file", own.status());
    if (own->kind != CertIdentity::Kind::kParty || own->party != c.party()) {
      return err.Invalid("tls.cert_file",
                         absl::StrCat("the certificate does not name party ", c.party(),
                                      " (URI SAN urn:comity:party:", c.party(),
                                      "); use this node's own certificate"));
    }
    auto ca = CaVerifier::Create(setup->operator_ca_pem);
    if (!ca.ok()) return err.Wrap("tls.operator_ca_file", ca.status());
    setup->operator_ca = *std::move(ca);
  }

  for (int i = 0; i < c.approval().assistance_types_size(); ++i) {
    if (c.approval().assistance_types(i) == v1::ASSISTANCE_TYPE_UNSPECIFIED) {
      return err.Invalid(absl::StrCat("approval.assistance_types[", i, "]"),
                         "name an assistance type (e.g. EXTRADITION, INTERCEPTION)");
    }
  }

  // Treaty library.
  if (c.treaties_dir().empty()) {
    return err.Invalid("treaties_dir",
                       "is required: the treaty library directory (e.g. the project's "
                       "deploy/treaties)");
  }
  c.set_treaties_dir(ResolvePath(base_dir, c.treaties_dir()));
  {
    auto lib = TreatyLibrary::LoadDirectory(c.treaties_dir());
    if (!lib.ok()) return err.Wrap("treaties_dir", lib.status());
    setup->treaties = *std::move(lib);
  }

  // Signing key.
  const v1::SigningKeyConfig& sk = c.signing_key();
  if (sk.key_id().empty()) {
    return err.Invalid("signing_key.key_id", "is required (e.g. \"FR-2026-1\")");
  }
  c.mutable_signing_key()->set_private_key_file(
      ResolvePath(base_dir, sk.private_key_file()));
  COMITY_ASSIGN_OR_RETURN(std::string key_pem,
                          ReadNamed(err, "signing_key.private_key_file",
                                    c.signing_key().private_key_file(), true));
  {
    auto key = SigningKey::FromPem(key_pem);
    if (!key.ok()) return err.Wrap("signing_key.private_key_file", key.status());
    setup->signing_key = *std::move(key);
  }
  if (!sk.revoked_at().empty()) {
    return err.Invalid("signing_key.revoked_at",
                       "the key this node signs with cannot be revoked; rotate first: move it "
                       "to previous_signing_keys with a new signing_key (docs/keys.md)");
  }
  if (!sk.ed25519_public_key().empty()) {
    return err.Invalid("signing_key.ed25519_public_key",
                       "is only for previous_signing_keys; the public key of signing_key is "
                       "taken from its private key");
  }
  COMITY_ASSIGN_OR_RETURN(setup->signing_key_validity,
                          ParseValidity(err, "signing_key", sk.not_before(), sk.not_after(), ""));
  COMITY_RETURN_IF_ERROR(setup->key_ring.Add(c.party(), c.signing_key().key_id(),
                                             setup->signing_key->public_key(),
                                             setup->signing_key_validity));
  for (int i = 0; i < c.previous_signing_keys_size(); ++i) {
    v1::SigningKeyConfig* pk = c.mutable_previous_signing_keys(i);
    const std::string f = absl::StrCat("previous_signing_keys[", i, "]");
    PreviousSigningKey prev;
    prev.key_id = pk->key_id();
    if (prev.key_id.empty()) {
      return err.Invalid(absl::StrCat(f, ".key_id"), "is required (e.g. \"FR-2025-1\")");
    }
    if (prev.key_id == sk.key_id()) {
      return err.Invalid(absl::StrCat(f, ".key_id"),
                         absl::StrCat("'", prev.key_id, "' is the current signing_key's id; "
                                      "a new key needs a new id"));
    }
    if (pk->private_key_file().empty() == pk->ed25519_public_key().empty()) {
      return err.Invalid(f, "give exactly one of private_key_file (the key can vouch for its "
                            "successor) and ed25519_public_key (verification only)");
    }
    if (!pk->private_key_file().empty()) {
      pk->set_private_key_file(ResolvePath(base_dir, pk->private_key_file()));
      COMITY_ASSIGN_OR_RETURN(std::string pem,
                              ReadNamed(err, absl::StrCat(f, ".private_key_file"),
                                        pk->private_key_file(), true));
      auto key = SigningKey::FromPem(pem);
      if (!key.ok()) return err.Wrap(absl::StrCat(f, ".private_key_file"), key.status());
      prev.key = *std::move(key);
      prev.public_key = prev.key->public_key();
    } else {
      COMITY_ASSIGN_OR_RETURN(prev.public_key,
                              DecodePublicKey(err, absl::StrCat(f, ".ed25519_public_key"),
                                              pk->ed25519_public_key()));
    }
    COMITY_ASSIGN_OR_RETURN(prev.validity, ParseValidity(err, f, pk->not_before(),
                                                         pk->not_after(), pk->revoked_at()));
    absl::Status added =
        setup->key_ring.Add(c.party(), prev.key_id, prev.public_key, prev.validity);
    if (!added.ok()) return err.Wrap(f, added);
    setup->previous_signing_keys.push_back(std::move(prev));
  }

  COMITY_RETURN_IF_ERROR(CheckImportDir(err, base_dir, c));

  // Peers.
  if (c.peers().empty()) {
    return err.Invalid("peers", "at least one peer is required");
  }
  for (int i = 0; i < c.peers_size(); ++i) {
    v1::PeerConfig* p = c.mutable_peers(i);
    std::string f = absl::StrCat("peers[", i, "]");
    if (!IsPartyCode(p->party())) {
      return err.Invalid(absl::StrCat(f, ".party"),
                         absl::StrCat("'", p->party(),
                                      "' is not an ISO 3166-1 alpha-2 code (e.g. JP)"));
    }
    if (p->party() == c.party()) {
      return err.Invalid(absl::StrCat(f, ".party"),
                         "is this node's own party; list only other parties");
    }
    if (setup->peers.count(p->party()) != 0) {
      return err.Invalid(absl::StrCat(f, ".party"),
                         absl::StrCat(p->party(), " is listed twice; merge the entries"));
    }
    COMITY_RETURN_IF_ERROR(CheckAddress(err, absl::StrCat(f, ".address"), p->address()));
    p->set_ca_file(ResolvePath(base_dir, p->ca_file()));
    PeerSetup peer;
    peer.party = p->party();
    peer.address = p->address();
    COMITY_ASSIGN_OR_RETURN(peer.ca_pem,
                            ReadNamed(err, absl::StrCat(f, ".ca_file"), p->ca_file(), false));
    auto ca = CaVerifier::Create(peer.ca_pem);
    if (!ca.ok()) return err.Wrap(absl::StrCat(f, ".ca_file"), ca.status());
    peer.ca = *std::move(ca);
    if (p->signing_keys().empty()) {
      return err.Invalid(absl::StrCat(f, ".signing_keys"),
                         "at least one signing key is required");
    }
    for (int k = 0; k < p->signing_keys_size(); ++k) {
      const v1::PeerKey& key = p->signing_keys(k);
      std::string kf = absl::StrCat(f, ".signing_keys[", k, "]");
      if (key.key_id().empty()) return err.Invalid(absl::StrCat(kf, ".key_id"), "is required");
      COMITY_ASSIGN_OR_RETURN(std::string raw,
                              DecodePublicKey(err, absl::StrCat(kf, ".ed25519_public_key"),
                                              key.ed25519_public_key()));
      COMITY_ASSIGN_OR_RETURN(KeyValidity validity,
                              ParseValidity(err, kf, key.not_before(), key.not_after(),
                                            key.revoked_at()));
      absl::Status added = setup->key_ring.Add(p->party(), key.key_id(), raw, validity);
      if (!added.ok()) return err.Wrap(kf, added);
    }
    setup->peers.emplace(p->party(), std::move(peer));
  }
  return setup;
}

absl::StatusOr<std::unique_ptr<NodeSetup>> LoadNodeConfig(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  return ParseNodeConfig(*text, path, DirName(path));
}

absl::StatusOr<v1::ClientConfig> LoadClientConfig(const std::string& path) {
  COMITY_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  v1::ClientConfig c;
  COMITY_RETURN_IF_ERROR(ParseTextProto(text, path, &c));
  FieldErrors err(path);
  COMITY_RETURN_IF_ERROR(CheckAddress(err, "address", c.address()));
  std::string base = DirName(path);
  for (auto [field, value] :
       {std::pair<const char*, std::string*>{"ca_file", c.mutable_ca_file()},
        {"cert_file", c.mutable_cert_file()},
        {"key_file", c.mutable_key_file()}}) {
    if (value->empty()) return err.Invalid(field, "is required (a file path)");
    *value = ResolvePath(base, *value);
  }
  return c;
}

}  // namespace comity
