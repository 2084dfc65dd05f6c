// `comity admin`: node administration by an operator with the admin role.
// `comity admin backup --out FILE` saves a consistent copy of the node's
// database, taken while the node runs (docs/backup.md).
#ifndef COMITY_CLIENT_ADMIN_CLI_H_
#define COMITY_CLIENT_ADMIN_CLI_H_

#include <ostream>
#include <string>
#include <vector>

#include "client/cli.h"

namespace comity {

// `args` are the whole command line without "admin" ([--connect FILE]
// [--json] backup --out FILE). Exit codes as RunCli.
int RunAdminCli(const std::vector<std::string>& args, const GetEnv& env, std::ostream& out,
                std::ostream& err);

}  // namespace comity

#endif  // COMITY_CLIENT_ADMIN_CLI_H_
