#include "tests/fuzz/fuzz_common.h"

#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <set>

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/stubs/logging.h"
#include "server/util/files.h"

namespace comity::fuzz {
namespace {

std::vector<std::string>* TempDirs() {
  static auto* dirs = new std::vector<std::string>();
  return dirs;
}

void RemoveTempDirs() {
  for (const std::string& dir : *TempDirs()) {
    std::string cmd = absl::StrCat("rm -rf '", dir, "'");
    if (std::system(cmd.c_str()) != 0) {
      std::fprintf(stderr, "fuzz: could not remove %s\n", dir.c_str());
    }
  }
}

int Shell(const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

}  // namespace

void Fail(absl::string_view what) {
  std::fprintf(stderr, "comity fuzz invariant broken: %.*s\n", static_cast<int>(what.size()),
               what.data());
  std::abort();
}

void Check(bool ok, absl::string_view context) {
  if (!ok) Fail(absl::StrCat("set-up failed: ", context));
}

std::string MakeTempDir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp",
                                     "/comity-fuzz-XXXXXX");
  Check(::mkdtemp(pattern.data()) != nullptr, absl::StrCat("mkdtemp ", pattern));
  static std::once_flag registered;
  std::call_once(registered, [] { std::atexit(RemoveTempDirs); });
  TempDirs()->push_back(pattern);
  return pattern;
}

std::string SourceDir() { return COMITY_SOURCE_DIR; }

std::string MakeNetwork(const std::vector<std::string>& parties) {
  std::string dir = MakeTempDir();
  std::string cmd = absl::StrCat(SourceDir(), "/certs/make-network.sh '", dir, "/net'");
  for (const std::string& p : parties) absl::StrAppend(&cmd, " ", p);
  absl::StrAppend(&cmd, " --operators fuzz >/dev/null");
  Check(Shell(cmd) == 0, cmd);
  return dir + "/net";
}

std::string NodeConfigText(const std::string& party, const std::string& peer,
                           const std::string& peer_ca, const std::string& peer_public_key_b64,
                           const std::string& treaties_dir) {
  return absl::StrCat(
      "party: \"", party, "\"\n", "peer_listen_address: \"127.0.0.1:7401\"\n",
      "operator_listen_address: \"127.0.0.1:7402\"\n", "data_dir: \"data\"\n",
      "treaties_dir: \"", treaties_dir, "\"\n",
      "tls { cert_file: \"node.pem\" key_file: \"node.key\" operator_ca_file: \"ca.pem\" }\n",
      "signing_key { key_id: \"", party, "-1\" private_key_file: \"signing.key\" }\n",
      "limits { max_message_bytes: 1048576 replay_window_seconds: 86400 }\n",
      "delivery { attempt_timeout_ms: 2000 retry_initial_ms: 100 retry_max_ms: 400 }\n",
      "approval { assistance_types: [EXTRADITION, INTERCEPTION] }\n", "peers {\n  party: \"",
      peer, "\"\n  address: \"127.0.0.1:7403\"\n  ca_file: \"", peer_ca, "\"\n",
      "  signing_keys { key_id: \"", peer, "-1\" ed25519_public_key: \"", peer_public_key_b64,
      "\" }\n}\n");
}

void SeedWriter::Add(const std::string& name, absl::string_view bytes) {
  std::ofstream out(absl::StrCat(dir_, "/", name), std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  Check(static_cast<bool>(out), absl::StrCat("writing seed ", dir_, "/", name));
}

void SeedWriter::Dictionary(const std::vector<std::string>& tokens) {
  std::ofstream out(absl::StrCat(dir_, ".dict"), std::ios::trunc);
  for (const std::string& t : tokens) {
    out << '"';
    for (char c : t) {
      if (c == '"' || c == '\\') out << '\\';
      out << c;
    }
    out << "\"\n";
  }
  Check(static_cast<bool>(out), "writing dictionary");
}

void InitializeFuzzer(const std::function<void(SeedWriter&)>& write_seeds) {
  google::protobuf::SetLogHandler(nullptr);
  const char* dir = std::getenv("COMITY_FUZZ_WRITE_SEEDS");
  if (dir == nullptr || *dir == '\0') return;
  Check(Shell(absl::StrCat("mkdir -p '", dir, "'")) == 0, dir);
  SeedWriter writer(dir);
  write_seeds(writer);
  std::exit(0);
}

const TwoPartyKeys& Keys() {
  static const TwoPartyKeys* keys = [] {
    auto* k = new TwoPartyKeys();
    auto fr = SigningKey::Generate();
    auto jp = SigningKey::Generate();
    Check(fr.ok() && jp.ok(), "key generation");
    k->fr = *std::move(fr);
    k->jp = *std::move(jp);
    Check(k->ring.Add("FR", "FR-1", k->fr->public_key()).ok(), "ring FR");
    Check(k->ring.Add("JP", "JP-1", k->jp->public_key()).ok(), "ring JP");
    return k;
  }();
  return *keys;
}

std::vector<std::string> TextFormatTokens(const google::protobuf::Descriptor* descriptor) {
  std::set<std::string> tokens = {"{", "}", ":", "[", "]", "\"", "true", "false", "#"};
  std::set<const google::protobuf::Descriptor*> seen;
  std::vector<const google::protobuf::Descriptor*> todo = {descriptor};
  while (!todo.empty()) {
    const google::protobuf::Descriptor* d = todo.back();
    todo.pop_back();
    if (!seen.insert(d).second) continue;
    for (int i = 0; i < d->field_count(); ++i) {
      const google::protobuf::FieldDescriptor* f = d->field(i);
      tokens.insert(f->name());
      if (f->message_type() != nullptr) todo.push_back(f->message_type());
      if (const google::protobuf::EnumDescriptor* e = f->enum_type()) {
        for (int v = 0; v < e->value_count(); ++v) tokens.insert(e->value(v)->name());
      }
    }
  }
  return std::vector<std::string>(tokens.begin(), tokens.end());
}

}  // namespace comity::fuzz
