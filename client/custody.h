// A custody package's directory as `comity export` writes it and `comity
// verify-package` checks it (docs/custody.md):
//
//   DIR/package.pb      the serialized comity.v1.CustodyPackage, as the node signed its parts
//   DIR/manifest.json   the same for people, formed from package.pb by CustodyManifest
//   DIR/evidence/NAME   each evidence file the package lists
//
//   CustodyReport report = VerifyPackageDir("/cases/17");
//   if (!report.ok()) std::cerr << report.FirstFailure() << "\n";
//
// No gRPC here: the offline verifier runs on a court's machine.
#ifndef COMITY_CLIENT_CUSTODY_H_
#define COMITY_CLIENT_CUSTODY_H_

#include <string>

#include "client/output.h"
#include "comity/v1/custody.pb.h"
#include "server/audit/custody.h"

namespace comity {

inline constexpr char kPackageFile[] = "package.pb";
inline constexpr char kManifestFile[] = "manifest.json";
// The largest package.pb a verifier reads.
inline constexpr size_t kMaxPackageBytes = 256u << 20;

// The manifest of a package whose bytes hash to `package_sha256` (raw):
// the request, receipt, steps, files, keys (with fingerprints) and log
// entries, in that order. Deterministic: the same package gives the same
// JSON, which is how a verifier knows the manifest was not edited.
JsonValue CustodyManifest(const v1::CustodyPackage& package,
                          const std::string& package_sha256);
// CustodyManifest as the file holds it: indented, ending in a newline.
std::string CustodyManifestText(const v1::CustodyPackage& package,
                                const std::string& package_sha256);

// Checks the package in `dir` offline (server/audit/custody.h), then that
// manifest.json is the one package.pb gives and that evidence/ holds no file
// the package does not list. A missing or unreadable package.pb is the
// report's first, failed check. `package_sha256` (if not null) receives the
// SHA-256 (raw) of package.pb.
CustodyReport VerifyPackageDir(const std::string& dir, std::string* package_sha256 = nullptr);

}  // namespace comity

#endif  // COMITY_CLIENT_CUSTODY_H_
