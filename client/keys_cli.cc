#include "client/keys_cli.h"

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "client/args.h"
#include "client/connection.h"
#include "client/output.h"
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
  const bool json = WantsJson(args);
  auto fail = [&err, json](const CliError& e) { return ReportError(err, json, "comity keys", e); };
  absl::StatusOr<ParsedArgs> parsed = ParseArgs(args, spec);
  if (!parsed.ok()) {
    return fail({kExitUsage,
                 absl::StrCat(parsed.status().message(),
                              " (usage: comity keys [--party XX] [--json])")});
  }
  if (parsed->switches.count("help") != 0) {
    out << UsageText("keys");
    return kExitOk;
  }
  if (!parsed->positional.empty()) {
    return fail({kExitUsage, absl::StrCat("unexpected argument '", parsed->positional[0], "'")});
  }
  absl::StatusOr<NodeConnection> conn = ConnectToNode(*parsed, env);
  if (!conn.ok()) return fail({kExitUsage, std::string(conn.status().message())});
  auto stub = v1::OperatorService::NewStub(conn->channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(15)));
  v1::ListKeysResponse resp;
  grpc::Status status = stub->ListKeys(&ctx, v1::ListKeysRequest(), &resp);
  if (!status.ok()) return fail(RpcCliError(conn->address, status));
  const std::string party = parsed->Get("party", "");
  v1::ListKeysResponse shown;
  for (const v1::KeyStatus& k : resp.keys()) {
    if (party.empty() || k.party() == party) *shown.add_keys() = k;
  }
  if (json) {
    // A list: one array (docs/cli.md), each key as protobuf's JSON mapping
    // prints a comity.v1.KeyStatus, with its fingerprint as the text and
    // `audit verify --bundle` show it.
    JsonValue list = JsonValue::Array();
    for (const v1::KeyStatus& k : shown.keys()) {
      // As an object (not raw protobuf JSON), so the fingerprint joins it.
      google::protobuf::util::JsonPrintOptions opts;
      opts.preserve_proto_field_names = true;
      std::string text;
      google::protobuf::Value as_value;
      if (!google::protobuf::util::MessageToJsonString(k, &text, opts).ok() ||
          !google::protobuf::util::JsonStringToMessage(text, &as_value).ok()) {
        err << "comity keys: cannot print JSON\n";
        return kExitFailure;
      }
      JsonValue key = JsonValue::FromProtoValue(as_value);
      key.Set("fingerprint", KeyFingerprint(k.ed25519_public_key()));
      list.Add(std::move(key));
    }
    out << list.Dump() << "\n";
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
