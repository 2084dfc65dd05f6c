// `comity treaty ...`: the treaty library and rules engine, offline (no
// node needed).
#ifndef COMITY_CLIENT_TREATY_CLI_H_
#define COMITY_CLIENT_TREATY_CLI_H_

#include <ostream>
#include <string>
#include <vector>

#include "client/cli.h"

namespace comity {

// `args` are what follows "treaty". Exit codes as RunCli.
int RunTreatyCli(const std::vector<std::string>& args, const GetEnv& env, std::ostream& out,
                 std::ostream& err);

}  // namespace comity

#endif  // COMITY_CLIENT_TREATY_CLI_H_
