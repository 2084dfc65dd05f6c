// The `comity` command line: parses arguments, talks to the operator's own
// node over mutual TLS and prints results as text or JSON. main.cc only
// calls RunCli.
//
//   std::vector<std::string> args = {"list", "--received", "--json"};
//   int exit_code = RunCli(args, env, std::cout, std::cerr);
#ifndef COMITY_CLIENT_CLI_H_
#define COMITY_CLIENT_CLI_H_

#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "client/output.h"  // The exit codes.

namespace comity {

// Looks up an environment variable ("" if unset); injected for tests.
using GetEnv = std::function<std::string(const std::string&)>;

// Runs one command. `args` excludes the program name. Errors are one line
// on `err`, prefixed "comity: ", or under --json one JSON object
// (ReportError); the exit codes are output.h's (docs/cli.md).
int RunCli(const std::vector<std::string>& args, const GetEnv& env, std::ostream& out,
           std::ostream& err);

// How a command reports a file it saved after checking it:
// "wrote PATH (N bytes, sha256 HEX)".
std::string WroteLine(const std::string& path, uint64_t bytes,
                      const std::string& sha256_hex);

}  // namespace comity

#endif  // COMITY_CLIENT_CLI_H_
