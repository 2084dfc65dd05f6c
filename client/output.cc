#include "client/output.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "google/protobuf/message.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "server/util/json.h"

namespace comity {

const char* ExitCodeName(int code) {
  switch (code) {
    case kExitOk:
      return "OK";
    case kExitFailure:
      return "REFUSED";
    case kExitUsage:
      return "USAGE";
    case kExitUnreachable:
      return "UNREACHABLE";
    default:
      return "UNKNOWN";
  }
}

JsonValue::JsonValue(double d) {
  if (!std::isfinite(d)) return;  // null
  kind_ = Kind::kNumber;
  char buf[32];
  // Integral values print without a fraction; others with enough digits to
  // read back the same double.
  if (d == std::floor(d) && std::fabs(d) < 1e15) {
    std::snprintf(buf, sizeof(buf), "%.0f", d);
  } else {
    std::snprintf(buf, sizeof(buf), "%.17g", d);
  }
  scalar_ = buf;
}

JsonValue JsonValue::Object() {
  JsonValue v;
  v.kind_ = Kind::kObject;
  return v;
}

JsonValue JsonValue::Array() {
  JsonValue v;
  v.kind_ = Kind::kArray;
  return v;
}

JsonValue JsonValue::FromProto(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = true;
  std::string text;
  JsonValue v;
  // Protobuf's printer writes valid JSON (proto3 strings are UTF-8, bytes
  // base64); should it fail, the value is null rather than broken text.
  if (!google::protobuf::util::MessageToJsonString(m, &text, opts).ok()) return v;
  v.kind_ = Kind::kRaw;
  v.scalar_ = std::move(text);
  return v;
}

JsonValue JsonValue::FromProtoValue(const google::protobuf::Value& v) {
  switch (v.kind_case()) {
    case google::protobuf::Value::kBoolValue:
      return JsonValue(v.bool_value());
    case google::protobuf::Value::kNumberValue:
      return JsonValue(v.number_value());
    case google::protobuf::Value::kStringValue:
      return JsonValue(v.string_value());
    case google::protobuf::Value::kListValue: {
      JsonValue list = Array();
      for (const auto& e : v.list_value().values()) list.Add(FromProtoValue(e));
      return list;
    }
    case google::protobuf::Value::kStructValue: {
      std::vector<std::string> keys;
      for (const auto& [k, e] : v.struct_value().fields()) keys.push_back(k);
      std::sort(keys.begin(), keys.end());  // Map order is not stable.
      JsonValue object = Object();
      for (const std::string& k : keys) {
        object.Set(k, FromProtoValue(v.struct_value().fields().at(k)));
      }
      return object;
    }
    default:
      return JsonValue();
  }
}

JsonValue& JsonValue::Set(absl::string_view key, JsonValue value) {
  for (auto& [k, v] : members_) {
    if (k == key) {
      v = std::move(value);
      return *this;
    }
  }
  members_.emplace_back(std::string(key), std::move(value));
  return *this;
}

JsonValue& JsonValue::Add(JsonValue value) {
  members_.emplace_back(std::string(), std::move(value));
  return *this;
}

std::string JsonValue::Dump() const {
  std::string out;
  DumpTo(&out);
  return out;
}

std::string JsonValue::DumpIndented() const {
  std::string out;
  DumpTo(&out, 0);
  return out;
}

void JsonValue::DumpTo(std::string* out, int indent) const {
  switch (kind_) {
    case Kind::kNull:
      out->append("null");
      return;
    case Kind::kBool:
    case Kind::kNumber:
    case Kind::kRaw:
      out->append(scalar_);
      return;
    case Kind::kString:
      out->append(JsonQuote(scalar_));
      return;
    case Kind::kArray:
    case Kind::kObject: {
      const bool object = kind_ == Kind::kObject;
      const bool indented = indent >= 0 && !members_.empty();
      auto newline = [&](int depth) {
        out->push_back('\n');
        out->append(2 * depth, ' ');
      };
      out->push_back(object ? '{' : '[');
      bool first = true;
      for (const auto& [k, v] : members_) {
        if (!first) out->push_back(',');
        first = false;
        if (indented) newline(indent + 1);
        if (object) {
          out->append(JsonQuote(k));
          out->append(indented ? ": " : ":");
        }
        v.DumpTo(out, indent < 0 ? -1 : indent + 1);
      }
      if (indented) newline(indent);
      out->push_back(object ? '}' : ']');
      return;
    }
  }
}

int ReportError(std::ostream& err, bool json, absl::string_view prefix,
                const CliError& e) {
  if (json) {
    JsonValue error = JsonValue::Object();
    error.Set("code", ExitCodeName(e.code))
        .Set("exit_code", e.code)
        .Set("message", e.message);
    error.Set("hint", e.hint);  // "" when there is none: always present.
    err << JsonValue::Object().Set("error", std::move(error)).Dump() << "\n";
  } else {
    // One line, whatever the error: the hint follows the message.
    err << prefix << ": " << e.message << (e.hint.empty() ? "" : "; ") << e.hint << "\n";
  }
  return e.code;
}

bool WantsJson(const std::vector<std::string>& args) {
  for (const std::string& a : args) {
    if (a == "--") break;
    if (a == "--json") return true;
  }
  return false;
}

}  // namespace comity
