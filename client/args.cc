#include "client/args.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace comity {

std::string FindCommand(const std::vector<std::string>& args,
                        const std::set<std::string>& value_flags) {
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i].rfind("--", 0) != 0) return args[i];
    if (args[i].find('=') == std::string::npos && value_flags.count(args[i].substr(2)) != 0) {
      ++i;  // Skip its value.
    }
  }
  return "";
}

absl::StatusOr<ParsedArgs> ParseSubcommand(const std::vector<std::string>& args,
                                           const FlagSpec& spec, const std::string& group,
                                           const std::string& command) {
  absl::StatusOr<ParsedArgs> parsed = ParseArgs(args, spec);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(parsed.status().message(), " (for ", group,
                                                   " ", command, "; see 'comity ", group,
                                                   " help')"));
  }
  auto& positional = parsed->positional;
  auto it = std::find(positional.begin(), positional.end(), command);
  if (it != positional.end()) positional.erase(it);
  return parsed;
}

absl::StatusOr<ParsedArgs> ParseArgs(const std::vector<std::string>& args,
                                     const FlagSpec& spec) {
  ParsedArgs parsed;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.size() < 3 || arg.compare(0, 2, "--") != 0) {
      parsed.positional.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2);
    std::string value;
    bool has_inline = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_inline = true;
    }
    if (spec.switches.count(name) != 0) {
      if (has_inline) {
        return absl::InvalidArgumentError(absl::StrCat("--", name, " takes no value"));
      }
      parsed.switches.insert(name);
      continue;
    }
    if (spec.with_value.count(name) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    }
    if (!has_inline) {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
      }
      value = args[++i];
    }
    auto& slot = parsed.values[name];
    if (!slot.empty() && spec.repeated.count(name) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " is given twice"));
    }
    slot.push_back(std::move(value));
  }
  return parsed;
}

}  // namespace comity
