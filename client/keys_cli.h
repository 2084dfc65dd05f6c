// `comity keys`: every signing key the operator's node knows (its own and
// its peers'), with validity windows, revocations and announcement state
// (docs/keys.md).
#ifndef COMITY_CLIENT_KEYS_CLI_H_
#define COMITY_CLIENT_KEYS_CLI_H_

#include <ostream>
#include <string>
#include <vector>

#include "client/cli.h"

namespace comity {

// `args` are the whole command line without "keys" ([--connect FILE]
// [--json] [--party XX]). Exit codes as RunCli.
int RunKeysCli(const std::vector<std::string>& args, const GetEnv& env, std::ostream& out,
               std::ostream& err);

}  // namespace comity

#endif  // COMITY_CLIENT_KEYS_CLI_H_
