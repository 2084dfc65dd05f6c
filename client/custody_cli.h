// `comity export ID --out DIR` (a custody package: the evidence files, the
// node's signed package.pb and manifest.json, checked before it reports)
// and `comity verify-package DIR` (offline, on any machine). Formats:
// docs/custody.md.
#ifndef COMITY_CLIENT_CUSTODY_CLI_H_
#define COMITY_CLIENT_CUSTODY_CLI_H_

#include <ostream>
#include <string>
#include <vector>

#include "comity/v1/operator.grpc.pb.h"

namespace comity {

struct ExportOptions {
  std::string request_id;  // Full id (prefixes resolved by the caller).
  std::string dir;         // --out
  bool allow_tlp_red = false;
  bool json = false;
};

// Talks to the node at `address` through `stub`; returns the exit code.
int ExportCustodyPackage(v1::OperatorService::Stub& stub, const std::string& address,
                         const ExportOptions& options, std::ostream& out, std::ostream& err);

// `args`: what follows "verify-package" (DIR, --json, --help).
int RunVerifyPackageCli(const std::vector<std::string>& args, std::ostream& out,
                        std::ostream& err);

}  // namespace comity

#endif  // COMITY_CLIENT_CUSTODY_CLI_H_
