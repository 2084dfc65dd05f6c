// Shared set-up of the libFuzzer targets in tests/fuzz (docs/fuzzing.md):
// throwaway directories, a test network's credentials made at start by
// certs/make-network.sh (never committed), and seed writing. The in-memory
// node is in node_fixture.h.
//
// Seeds: each target's LLVMFuzzerInitialize calls InitializeFuzzer; when the
// environment variable COMITY_FUZZ_WRITE_SEEDS names a directory, the target
// writes its seed inputs there (and a libFuzzer dictionary to "<dir>.dict"
// if it has one) and exits instead of fuzzing. tests/fuzz.sh does this
// before each run, so no seed needs to be committed.
#ifndef COMITY_TESTS_FUZZ_FUZZ_COMMON_H_
#define COMITY_TESTS_FUZZ_FUZZ_COMMON_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"
#include "server/core/envelope.h"
#include "server/crypto/ed25519.h"

namespace comity::fuzz {

// Prints `what` and aborts: libFuzzer then saves the input as a crash. For
// broken invariants (a parser accepting what it must not, or the reverse).
[[noreturn]] void Fail(absl::string_view what);

// Aborts with `context` unless `ok`; for set-up steps that cannot fail.
void Check(bool ok, absl::string_view context);

// A fresh directory under $TMPDIR (or /tmp), removed when the process exits.
std::string MakeTempDir();

// The repository root (compiled in), for certs/ and deploy/treaties.
std::string SourceDir();

// Runs certs/make-network.sh for `parties` into a new temporary directory
// and returns it; party XX's files are then in <dir>/XX/.
std::string MakeNetwork(const std::vector<std::string>& parties);

// The text of a node configuration of `party` whose files are in its own
// directory of a MakeNetwork directory; `peer` is its single peer.
// `peer_ca` and `treaties_dir` as they should appear in the text.
std::string NodeConfigText(const std::string& party, const std::string& peer,
                           const std::string& peer_ca, const std::string& peer_public_key_b64,
                           const std::string& treaties_dir);

class SeedWriter {
 public:
  explicit SeedWriter(std::string dir) : dir_(std::move(dir)) {}
  // Writes one seed input, named `name` (a file name).
  void Add(const std::string& name, absl::string_view bytes);
  // Writes the libFuzzer dictionary "<dir>.dict" with these tokens.
  void Dictionary(const std::vector<std::string>& tokens);

 private:
  std::string dir_;
};

// Call first in LLVMFuzzerInitialize. Discards protobuf's log messages
// (fuzzing makes it log "invalid UTF-8" for most inputs). Then, if
// COMITY_FUZZ_WRITE_SEEDS is set: creates that directory, calls
// `write_seeds` and exits the process.
void InitializeFuzzer(const std::function<void(SeedWriter&)>& write_seeds);

// Every field and enum value name reachable from `descriptor`: dictionary
// tokens for protobuf text format inputs.
std::vector<std::string> TextFormatTokens(const google::protobuf::Descriptor* descriptor);

// Signing keys of FR and JP, made at first use (never written anywhere),
// and a ring that holds them as (FR, "FR-1") and (JP, "JP-1").
struct TwoPartyKeys {
  std::unique_ptr<SigningKey> fr, jp;
  KeyRing ring;
};
const TwoPartyKeys& Keys();

// The bytes of `data` as a string.
inline std::string Bytes(const uint8_t* data, size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}

}  // namespace comity::fuzz

#endif  // COMITY_TESTS_FUZZ_FUZZ_COMMON_H_
