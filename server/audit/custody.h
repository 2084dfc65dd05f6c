// Checking a custody package offline (docs/custody.md): that every evidence
// file beside it is one the requested party released in a signed RESPOND
// step of a signed, received request, under use conditions the requesting
// party accepted in a step it signed, and that the exporting node's log,
// in a head it signed, holds the request, every step and every file.
// Only the package's own keys are used: compare their fingerprints with
// the ones each party publishes.
//
//   CustodyReport report = VerifyCustodyPackage(bytes, [&](const std::string& path) {
//     return DigestOf(dir + "/" + path);   // SHA-256 and size, or NotFound
//   });
//   if (!report.ok()) std::cerr << report.FirstFailure() << "\n";
#ifndef COMITY_SERVER_AUDIT_CUSTODY_H_
#define COMITY_SERVER_AUDIT_CUSTODY_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "comity/v1/custody.pb.h"

namespace comity {

inline constexpr uint32_t kCustodyFormatVersion = 1;

// Where a custody package keeps an evidence file, relative to its
// directory: "evidence/" + the name the responding party gave it, or
// "evidence/" + its SHA-256 in hex when that name could reach outside the
// directory (empty, ".", "..", a '/' or a NUL in it).
std::string CustodyPath(absl::string_view name, absl::string_view sha256);

// A file's SHA-256 (raw) and size, as a verifier reads it from disk.
struct FileDigest {
  std::string sha256;
  uint64_t size = 0;
};

// One check a verifier made, in the order made: what ("request", "receipt",
// "step 3", "evidence/disk.img", "log entry 17", ...) and its outcome.
struct CustodyCheck {
  std::string what;
  absl::Status status;
  std::string detail;  // What was established, for the report.
};

struct CustodyReport {
  // Each check made; a package is good only if every one passed.
  std::vector<CustodyCheck> checks;
  std::string request_id;
  std::string requesting_party;
  std::string requested_party;
  std::string exporting_party;
  uint32_t files = 0;
  uint32_t steps = 0;
  uint32_t log_entries = 0;

  bool ok() const;
  // "WHAT: message" of the first failed check; empty if none failed.
  std::string FirstFailure() const;
};

// `digest(path)` gives the file at `path` (CustodyFile.path, relative to
// the package's directory): NotFound if it is missing.
using FileDigestFn = std::function<absl::StatusOr<FileDigest>(const std::string& path)>;

// Checks `package_bytes` (the serialized CustodyPackage, as written) and
// the files it lists. Never fails as a call: what is wrong is in the report.
CustodyReport VerifyCustodyPackage(absl::string_view package_bytes,
                                   const FileDigestFn& digest);

}  // namespace comity

#endif  // COMITY_SERVER_AUDIT_CUSTODY_H_
