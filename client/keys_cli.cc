#include "client/keys_cli.h"

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "client/args.h"
#include "client/connection.h"
#include "client/usage.h"
#include "comity/v1/operator.grpc.pb.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "server/crypto/ed25519.h"

namespace comity {
namespace {

std::string When(int64_t micros, const char* unset) {
  if (micros == 0) return unset;
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixMicros(micros),
                          absl::UTCTimeZone());
}

}  // namespace

int RunKeysCli(const std::vector<std::string>& args, const GetEnv& env, std::ostream& out,
               std::ostream& err) {
  FlagSpec spec;
  spec.with_value = {"connect", "party"};
  spec.switches = {"json", "help"};
  absl::StatusOr<ParsedArgs> parsed = ParseArgs(args, spec);
  if (!parsed.ok()) {
    err << "comity keys: " << parsed.status().message()
        << " (usage: comity keys [--party XX] [--json])\n";
    return kExitUsage;
  }
  if (parsed->switches.count("help") != 0) {
    out << UsageText("keys");
    return kExitOk;
  }
  if (!parsed->positional.empty()) {
    err << "comity keys: unexpected argument '" << parsed->positional[0] << "'\n";
    return kExitUsage;
  }
  absl::StatusOr<NodeConnection> conn = ConnectToNode(*parsed, env);
  if (!conn.ok()) {
    err << "comity keys: " << conn.status().message() << "\n";
    return absl::IsInvalidArgument(conn.status()) ? kExitUsage : kExitFailure;
  }
  auto stub = v1::OperatorService::NewStub(conn->channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(15)));
  v1::ListKeysResponse resp;
  grpc::Status status = stub->ListKeys(&ctx, v1::ListKeysRequest(), &resp);
  if (!status.ok()) {
    err << "comity keys: " << DescribeRpcError(conn->address, status) << "\n";
    return kExitFailure;
  }
  const std::string party = parsed->Get("party", "");
  v1::ListKeysResponse shown;
  for (const v1::KeyStatus& k : resp.keys()) {
    if (party.empty() || k.party() == party) *shown.add_keys() = k;
  }
  if (parsed->switches.count("json") != 0) {
    std::string json;
    google::protobuf::util::JsonPrintOptions opts;
    opts.add_whitespace = true;
    opts.preserve_proto_field_names = true;
    google::protobuf::Struct keys;
    if (!google::protobuf::util::MessageToJsonString(shown, &json, opts).ok() ||
        !google::protobuf::util::JsonStringToMessage(json, &keys).ok()) {
      err << "comity keys: cannot print JSON\n";
      return kExitFailure;
    }
    // Each key also by its fingerprint, as the text and `audit verify
    // --bundle` show it.
    auto& list = *(*keys.mutable_fields())["keys"].mutable_list_value();
    for (int i = 0; i < list.values_size() && i < shown.keys_size(); ++i) {
      (*list.mutable_values(i)->mutable_struct_value()->mutable_fields())["fingerprint"]
          .set_string_value(KeyFingerprint(shown.keys(i).ed25519_public_key()));
    }
    json.clear();
    if (!google::protobuf::util::MessageToJsonString(keys, &json, opts).ok()) {
      err << "comity keys: cannot print JSON\n";
      return kExitFailure;
    }
    out << json;
    return kExitOk;
  }
  for (const v1::KeyStatus& k : shown.keys()) {
    out << k.party() << "  " << k.key_id() << "  " << k.state()
        << (k.signing() ? ", signing" : "");
    if (k.not_before_unix_micros() == 0 && k.not_after_unix_micros() == 0) {
      out << "  no validity window";
    } else {
      out << "  valid from " << When(k.not_before_unix_micros(), "(any time)") << " until "
          << When(k.not_after_unix_micros(), "(no end)");
    }
    if (k.revoked_at_unix_micros() != 0) {
      out << "  revoked from " << When(k.revoked_at_unix_micros(), "");
    }
    out << "  (" << k.source() << ")  " << KeyFingerprint(k.ed25519_public_key()) << "\n";
    if (!k.acknowledged_by().empty()) {
      out << "    announced to: " << absl::StrJoin(k.acknowledged_by(), ", ") << "\n";
    }
    if (!k.pending().empty()) {
      out << "    announcement pending for: " << absl::StrJoin(k.pending(), ", ") << "\n";
    }
  }
  if (shown.keys().empty())
    out << "(no keys" << (party.empty() ? "" : " of " + party) << ")\n";
  return kExitOk;
}

}  // namespace comity
