// A small parser for "COMMAND --flag value --switch" command lines, with
// errors that name the flag.
#ifndef COMITY_CLIENT_ARGS_H_
#define COMITY_CLIENT_ARGS_H_

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/descriptor.h"

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

// The first argument that is neither a flag nor the value of one of the
// `value_flags` (names without dashes); "" if none.
std::string FindCommand(const std::vector<std::string>& args,
                        const std::set<std::string>& value_flags);

// ParseArgs for `comity GROUP COMMAND ...`, with the command removed from
// the positionals; errors say "(for GROUP COMMAND; see 'comity GROUP help')".
absl::StatusOr<ParsedArgs> ParseSubcommand(const std::vector<std::string>& args,
                                           const FlagSpec& spec, const std::string& group,
                                           const std::string& command);

// InvalidArgument for an unknown flag, a missing value or a repeated
// single-valued flag.
absl::StatusOr<ParsedArgs> ParseArgs(const std::vector<std::string>& args,
                                     const FlagSpec& spec);

// Parses an enum value name, accepting lower case and an optional prefix
// ("amber" -> "TLP_AMBER" with prefix "TLP_").
template <typename Enum>
absl::StatusOr<Enum> ParseEnum(const google::protobuf::EnumDescriptor* desc,
                               const std::string& flag, const std::string& text,
                               const std::string& prefix = "") {
  std::string upper = absl::AsciiStrToUpper(text);
  for (char& c : upper) {
    if (c == '-' || c == '+') c = '_';
  }
  const google::protobuf::EnumValueDescriptor* v = desc->FindValueByName(upper);
  if (v == nullptr && !prefix.empty()) v = desc->FindValueByName(prefix + upper);
  if (v == nullptr || v->number() == 0) {
    std::vector<std::string> names;
    for (int i = 1; i < desc->value_count(); ++i) {
      std::string n = desc->value(i)->name();
      if (!prefix.empty() && n.rfind(prefix, 0) == 0) n = n.substr(prefix.size());
      names.push_back(n);
    }
    return absl::InvalidArgumentError(absl::StrCat("--", flag, " '", text,
                                                   "' is not one of: ",
                                                   absl::StrJoin(names, ", ")));
  }
  return static_cast<Enum>(v->number());
}

}  // namespace comity

#endif  // COMITY_CLIENT_ARGS_H_
