#include "client/admin_cli.h"

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/args.h"
#include "client/connection.h"
#include "comity/v1/operator.grpc.pb.h"
#include "server/crypto/sha256.h"
#include "server/evidence/evidence_store.h"

namespace comity {
namespace {

constexpr char kUsage[] =
    "usage: comity [--connect FILE] admin backup --out FILE [--json]\n"
    "  A consistent copy of the node's database, taken while it runs (admin role),\n"
    "  saved to FILE (mode 0600; FILE must not exist). Restore: docs/backup.md.\n";

// Writes the streamed copy to `out_path`.partial, checks its size and
// SHA-256, syncs it and renames it to `out_path`: a FILE that exists is
// always a whole, checked copy.
int Backup(const ParsedArgs& parsed, const GetEnv& env, std::ostream& out, std::ostream& err) {
  const std::string out_path = parsed.Get("out", "");
  if (out_path.empty()) {
    err << "comity admin backup: --out FILE is required\n" << kUsage;
    return kExitUsage;
  }
  struct stat st;
  if (::stat(out_path.c_str(), &st) == 0) {
    err << "comity admin backup: " << out_path
        << " exists; name a new file (a backup is never overwritten)\n";
    return kExitFailure;
  }
  absl::StatusOr<NodeConnection> conn = ConnectToNode(parsed, env);
  if (!conn.ok()) {
    err << "comity admin backup: " << conn.status().message() << "\n";
    return absl::IsInvalidArgument(conn.status()) ? kExitUsage : kExitFailure;
  }
  const std::string partial = out_path + ".partial";
  int fd = ::open(partial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    err << "comity admin backup: cannot create " << partial << ": " << std::strerror(errno)
        << "\n";
    return kExitFailure;
  }
  auto fail = [&](const std::string& why) {
    ::close(fd);
    std::remove(partial.c_str());
    err << "comity admin backup: " << why << "\n";
    return kExitFailure;
  };
  auto stub = v1::OperatorService::NewStub(conn->channel);
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientReader<v1::BackupChunk>> reader =
      stub->Backup(&ctx, v1::BackupRequest());
  v1::BackupChunk chunk;
  Sha256Stream hash;
  uint64_t written = 0;
  uint64_t total = 0;
  uint64_t audit_size = 0;
  std::string expected_sha;
  bool first = true;
  while (reader->Read(&chunk)) {
    if (first) {
      total = chunk.total_bytes();
      audit_size = chunk.audit_size();
      first = false;
    }
    const std::string& data = chunk.data();
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::write(fd, data.data() + off, data.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        ctx.TryCancel();
        (void)reader->Finish();
        return fail(absl::StrCat("cannot write ", partial, ": ", std::strerror(errno)));
      }
      off += static_cast<size_t>(n);
    }
    hash.Update(data);
    written += data.size();
    if (!chunk.sha256().empty()) expected_sha = chunk.sha256();
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) return fail(DescribeRpcError(conn->address, status));
  const std::string got_sha = hash.Finish();
  if (first || written != total || expected_sha.empty() || got_sha != expected_sha) {
    return fail(absl::StrCat("the copy received is incomplete or damaged (", written, " of ",
                             total, " bytes, SHA-256 ",
                             got_sha == expected_sha ? "matches" : "differs",
                             "); nothing was saved, take the backup again"));
  }
  if (::fsync(fd) != 0) return fail(absl::StrCat("cannot sync ", partial, ": ",
                                                 std::strerror(errno)));
  ::close(fd);
  if (std::rename(partial.c_str(), out_path.c_str()) != 0) {
    std::remove(partial.c_str());
    err << "comity admin backup: cannot rename " << partial << " to " << out_path << ": "
        << std::strerror(errno) << "\n";
    return kExitFailure;
  }
  const std::string hex = absl::BytesToHexString(got_sha);
  if (parsed.switches.count("json") != 0) {
    out << "{\"file\": \"" << absl::CEscape(out_path) << "\", \"bytes\": " << written
        << ", \"audit_size\": " << audit_size << ", \"sha256\": \"" << hex << "\"}\n";
  } else {
    out << "backup saved to " << out_path << ": " << written << " bytes, " << audit_size
        << " audit log entries, SHA-256 " << hex << "\n"
        << "restore: stop the node, install it as data_dir/comity.db, start, then "
           "`comity audit verify` (docs/backup.md)\n";
  }
  return kExitOk;
}

}  // namespace

int RunAdminCli(const std::vector<std::string>& args, const GetEnv& env, std::ostream& out,
                std::ostream& err) {
  FlagSpec spec;
  spec.with_value = {"connect", "out"};
  spec.switches = {"json", "help"};
  absl::StatusOr<ParsedArgs> parsed = ParseArgs(args, spec);
  if (!parsed.ok()) {
    err << "comity admin: " << parsed.status().message() << "\n" << kUsage;
    return kExitUsage;
  }
  if (parsed->switches.count("help") != 0) {
    out << kUsage;
    return kExitOk;
  }
  if (parsed->positional.size() != 1 || parsed->positional[0] != "backup") {
    err << "comity admin: expected a subcommand: backup\n" << kUsage;
    return kExitUsage;
  }
  return Backup(*parsed, env, out, err);
}

}  // namespace comity
