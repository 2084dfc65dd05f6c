#include "client/admin_cli.h"

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/args.h"
#include "client/connection.h"
#include "client/output.h"
#include "client/usage.h"
#include "comity/v1/operator.grpc.pb.h"
#include "server/crypto/verified_file.h"

namespace comity {
namespace {

const std::string& Usage() { return UsageText("admin backup"); }

// Streams the copy into a VerifiedFileWriter, which names it `out_path`
// only once its size and SHA-256 match what the node announced: a FILE that
// exists is always a whole, checked copy.
int Backup(const ParsedArgs& parsed, const GetEnv& env, std::ostream& out,
           std::ostream& err) {
  const bool json = parsed.switches.count("json") != 0;
  auto fail = [&err, json](int code, absl::string_view why, absl::string_view hint = "") {
    return ReportError(err, json, "comity admin backup",
                       CliError(code, std::string(why), std::string(hint)));
  };
  const std::string out_path = parsed.Get("out", "");
  if (out_path.empty()) {
    if (json) return fail(kExitUsage, "--out FILE is required", "comity admin backup --out FILE");
    err << "comity admin backup: --out FILE is required\n" << Usage();
    return kExitUsage;
  }
  absl::StatusOr<NodeConnection> conn = ConnectToNode(parsed, env);
  if (!conn.ok()) return fail(kExitUsage, conn.status().message());
  // Before anything is asked of the node: the directories, and a FILE that
  // exists (a backup is never overwritten).
  absl::StatusOr<std::unique_ptr<VerifiedFileWriter>> file =
      VerifiedFileWriter::Create(out_path);
  if (!file.ok()) return fail(kExitFailure, file.status().message());
  auto stub = v1::OperatorService::NewStub(conn->channel);
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientReader<v1::BackupChunk>> reader =
      stub->Backup(&ctx, v1::BackupRequest());
  v1::BackupChunk chunk;
  uint64_t total = 0;
  uint64_t audit_size = 0;
  std::string expected_sha;
  bool first = true;
  absl::Status written = absl::OkStatus();
  while (written.ok() && reader->Read(&chunk)) {
    if (first) {
      total = chunk.total_bytes();
      audit_size = chunk.audit_size();
      first = false;
    }
    written = (*file)->Append(chunk.data());
    if (!chunk.sha256().empty()) expected_sha = chunk.sha256();
  }
  if (!written.ok()) ctx.TryCancel();
  grpc::Status status = reader->Finish();
  if (!written.ok()) return fail(kExitFailure, written.message());
  if (!status.ok()) {
    const CliError e = RpcCliError(conn->address, status);
    return fail(e.code, e.message, e.hint);
  }
  if (first || expected_sha.empty()) {
    return fail(kExitFailure, absl::StrCat("the node sent ",
                                           first ? "nothing" : "no SHA-256 of the copy",
                                           "; nothing was saved, take the backup again"));
  }
  absl::StatusOr<std::string> hex = (*file)->Commit(total, expected_sha);
  if (!hex.ok()) {
    return fail(
        kExitFailure,
        absl::StrCat(hex.status().message(),
                     absl::IsDataLoss(hex.status()) ? ": take the backup again" : ""));
  }
  if (json) {
    out << JsonValue::Object()
               .Set("file", out_path)
               .Set("bytes", total)
               .Set("audit_size", audit_size)
               .Set("sha256", *hex)
               .Dump()
        << "\n";
  } else {
    out << WroteLine(out_path, total, *hex) << ": a backup with " << audit_size
        << " audit log entries\n"
        << "restore: stop the node, install it as data_dir/comity.db, start, then "
           "`comity audit verify` (docs/backup.md)\n";
  }
  return kExitOk;
}

}  // namespace

int RunAdminCli(const std::vector<std::string>& args, const GetEnv& env,
                std::ostream& out, std::ostream& err) {
  FlagSpec spec;
  spec.with_value = {"connect", "out"};
  spec.switches = {"json", "help"};
  const bool json = WantsJson(args);
  absl::StatusOr<ParsedArgs> parsed = ParseArgs(args, spec);
  if (!parsed.ok()) {
    if (json) {
      return ReportError(err, json, "comity admin",
                         CliError(kExitUsage, std::string(parsed.status().message()),
                                  "comity admin --help"));
    }
    err << "comity admin: " << parsed.status().message() << "\n" << Usage();
    return kExitUsage;
  }
  if (parsed->switches.count("help") != 0) {
    out << Usage();
    return kExitOk;
  }
  if (parsed->positional.size() != 1 || parsed->positional[0] != "backup") {
    if (json) {
      return ReportError(err, json, "comity admin",
                         CliError(kExitUsage, "expected a subcommand: backup",
                                  "comity admin backup --out FILE"));
    }
    err << "comity admin: expected a subcommand: backup\n" << Usage();
    return kExitUsage;
  }
  return Backup(*parsed, env, out, err);
}

}  // namespace comity
