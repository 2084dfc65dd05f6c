// The usage texts of the `comity` command line, in one table: the global
// help, each group's (audit, treaty, admin) and each subcommand's, with its
// flags and examples. The parsers print them on --help and name them in
// their errors; tests iterate over Commands() to check that every command
// the CLI dispatches has its own help.
//
//   if (std::optional<int> code = HandleHelpOrVersion(args, out)) return *code;
//   const CommandUsage* u = FindUsage("audit log");  // u->text: "usage: comity ... audit log ..."
#ifndef COMITY_CLIENT_USAGE_H_
#define COMITY_CLIENT_USAGE_H_

#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace comity {

struct CommandUsage {
  // The words after `comity`: "submit", "audit log", "treaty check".
  std::string name;
  // Its usage: a synopsis naming `comity NAME`, the flags, one or two
  // examples; ends with a newline.
  std::string text;
};

// Every command the CLI dispatches, groups ("audit") and their commands
// ("audit log") alike, in the order of the global help. Built once;
// thread-safe.
const std::vector<CommandUsage>& Commands();

// The entry for `name` ("audit log"), or nullptr if there is none.
const CommandUsage* FindUsage(absl::string_view name);

// The text of `name`'s entry; the global help if there is none.
const std::string& UsageText(absl::string_view name);

// `comity help`, `comity --help`: every command in a line or two.
const std::string& GlobalUsage();

// The top-level command names (the first word of each entry), in order,
// comma-separated: for "unknown command" errors.
std::string TopLevelCommandList();

// If `args` (without the program name) ask for help (`--help`, `-h`,
// `help [COMMAND...]`) or `--version`, prints it on `out` and returns the
// exit code (0); std::nullopt otherwise. `--help` after a known command
// prints that command's usage; after an unknown one, nothing (the parser
// reports the unknown command).
std::optional<int> HandleHelpOrVersion(const std::vector<std::string>& args, std::ostream& out);

}  // namespace comity

#endif  // COMITY_CLIENT_USAGE_H_
