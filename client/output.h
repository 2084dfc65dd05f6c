// The CLI's one output layer: a JSON value that every command's --json is
// built from and written by, the exit codes every command returns, and the
// one way an error is reported (a line of text, or under --json one JSON
// object on stderr). The formats are documented in docs/cli.md.
//
//   JsonValue v = JsonValue::Object();
//   v.Set("path", "/tmp/évidence.img").Set("bytes", uint64_t{300000});
//   out << v.Dump() << "\n";        // {"path":"/tmp/évidence.img","bytes":300000}
//
//   return ReportError(err, json, "comity", {kExitUsage, "export needs --out DIR",
//                                            "comity export ID --out DIR"});
//
// No gRPC here: this header is included by every command's file.
#ifndef COMITY_CLIENT_OUTPUT_H_
#define COMITY_CLIENT_OUTPUT_H_

#include <cstdint>
#include <ostream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace google::protobuf {
class Message;
class Value;
}  // namespace google::protobuf

namespace comity {

// Exit codes of every `comity` command (docs/cli.md).
inline constexpr int kExitOk = 0;       // Done; for checks: the check passed.
inline constexpr int kExitFailure = 1;  // REFUSED: the node refused, an operation failed
                                        // or is held back, or a check failed.
inline constexpr int kExitUsage = 2;    // USAGE: wrong arguments or --connect files.
inline constexpr int kExitUnreachable = 3;  // UNREACHABLE: the node did not answer.

// "OK", "REFUSED", "USAGE", "UNREACHABLE" (what error.code says under --json).
const char* ExitCodeName(int code);

// A JSON value: null, a boolean, a number, a string, an array or an object
// whose members keep the order they were set in. Strings may hold any bytes:
// Dump() writes valid UTF-8 through and any other byte as U+FFFD, so its
// text is always valid JSON (RFC 8259). Thread-compatible.
class JsonValue {
 public:
  JsonValue() = default;  // null
  JsonValue(std::nullptr_t) {}
  JsonValue(bool b) : kind_(Kind::kBool), scalar_(b ? "true" : "false") {}
  JsonValue(const char* s) : kind_(Kind::kString), scalar_(s) {}
  JsonValue(absl::string_view s) : kind_(Kind::kString), scalar_(s) {}
  JsonValue(const std::string& s) : kind_(Kind::kString), scalar_(s) {}
  JsonValue(std::string&& s) : kind_(Kind::kString), scalar_(std::move(s)) {}
  template <typename T,
            std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>, int> = 0>
  JsonValue(T n) : kind_(Kind::kNumber), scalar_(std::to_string(n)) {}
  JsonValue(double d);  // Not finite: null.

  static JsonValue Object();
  static JsonValue Array();
  // A protobuf message as protobuf's JSON mapping prints it, with the
  // .proto field names (e.g. "refusal_grounds").
  static JsonValue FromProto(const google::protobuf::Message& m);
  // A google.protobuf.Value (Struct members in key order).
  static JsonValue FromProtoValue(const google::protobuf::Value& v);

  // Object: sets member `key` (replacing one of that name). Returns *this.
  // Precondition: an object.
  JsonValue& Set(absl::string_view key, JsonValue value);
  // Array: appends. Returns *this. Precondition: an array.
  JsonValue& Add(JsonValue value);
  // The number of elements or members.
  size_t size() const { return members_.size(); }
  // Array or object: the i-th element or member value. Precondition: i < size().
  const JsonValue& At(size_t i) const { return members_[i].second; }
  // Object: the i-th member's name. Precondition: i < size().
  const std::string& KeyAt(size_t i) const { return members_[i].first; }

  // Compact JSON text, no trailing newline.
  std::string Dump() const;
  // The same, one member or element per line, indented by two spaces (for
  // files people read, e.g. a custody manifest); no trailing newline.
  std::string DumpIndented() const;

 private:
  enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject, kRaw };
  // `indent` < 0: compact; else the depth of this value.
  void DumpTo(std::string* out, int indent = -1) const;

  Kind kind_ = Kind::kNull;
  // kBool, kNumber: the literal; kString: the bytes; kRaw: JSON text.
  std::string scalar_;
  std::vector<std::pair<std::string, JsonValue>> members_;  // kArray: keys unused.
};

// An error that ends a command: its exit code, what went wrong and, when
// there is one, what to do about it.
struct CliError {
  CliError() = default;
  CliError(int exit_code, std::string what, std::string what_to_do = "")
      : code(exit_code), message(std::move(what)), hint(std::move(what_to_do)) {}

  int code = kExitFailure;
  std::string message;
  std::string hint;  // "" when there is none.
};

// Reports `e` on `err` and returns e.code. Text: one line, "PREFIX:
// message; hint" ("PREFIX: message" without a hint). Under --json: one line
// {"error":{"code":"USAGE","exit_code":2,"message":...,"hint":...}} (hint
// "" when there is none).
int ReportError(std::ostream& err, bool json, absl::string_view prefix,
                const CliError& e);

// Whether the command line asks for --json (looked at before it is parsed,
// so that even a usage error is reported as JSON).
bool WantsJson(const std::vector<std::string>& args);

}  // namespace comity

#endif  // COMITY_CLIENT_OUTPUT_H_
