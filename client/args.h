// A small parser for "COMMAND --flag value --switch" command lines, with
// errors that name the flag.
#ifndef COMITY_CLIENT_ARGS_H_
#define COMITY_CLIENT_ARGS_H_

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace comity {

struct FlagSpec {
  std::set<std::string> with_value;  // --name VALUE or --name=VALUE.
  std::set<std::string> repeated;    // Subset of with_value that may repeat.
  std::set<std::string> switches;    // --name.
};

struct ParsedArgs {
  std::map<std::string, std::vector<std::string>> values;
  std::set<std::string> switches;
  std::vector<std::string> positional;

  bool Has(const std::string& name) const {
    return values.count(name) != 0 || switches.count(name) != 0;
  }
  // The single value of a flag, or `fallback`.
  std::string Get(const std::string& name, const std::string& fallback = "") const {
    auto it = values.find(name);
    return it == values.end() ? fallback : it->second.back();
  }
  std::vector<std::string> GetAll(const std::string& name) const {
    auto it = values.find(name);
    return it == values.end() ? std::vector<std::string>() : it->second;
  }
};

// InvalidArgument for an unknown flag, a missing value or a repeated
// single-valued flag.
absl::StatusOr<ParsedArgs> ParseArgs(const std::vector<std::string>& args,
                                     const FlagSpec& spec);

}  // namespace comity

#endif  // COMITY_CLIENT_ARGS_H_
