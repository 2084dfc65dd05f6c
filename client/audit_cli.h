// `comity audit ...`: review of the node's tamper-evident audit log, for
// operators with the auditor role; `verify --bundle FILE` works offline.
#ifndef COMITY_CLIENT_AUDIT_CLI_H_
#define COMITY_CLIENT_AUDIT_CLI_H_

#include <ostream>
#include <string>
#include <vector>

#include "client/cli.h"

namespace comity {

// `args` are what follows "audit". Exit codes as RunCli.
int RunAuditCli(const std::vector<std::string>& args, const GetEnv& env, std::ostream& out,
                std::ostream& err);

}  // namespace comity

#endif  // COMITY_CLIENT_AUDIT_CLI_H_
