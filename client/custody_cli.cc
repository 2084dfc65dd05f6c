#include "client/custody_cli.h"

#include <grpcpp/grpcpp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "client/args.h"
#include "client/case_view.h"
#include "client/cli.h"
#include "client/connection.h"
#include "client/custody.h"
#include "client/output.h"
#include "client/usage.h"
#include "server/crypto/sha256.h"
#include "server/crypto/verified_file.h"
#include "server/util/hex.h"

namespace comity {
namespace {

// `dir` as an absolute path (what the package records as its destination).
std::string Absolute(const std::string& dir) {
  if (!dir.empty() && dir[0] == '/') return dir;
  char cwd[PATH_MAX];
  if (::getcwd(cwd, sizeof(cwd)) == nullptr) return dir;
  return absl::StrCat(cwd, "/", dir);
}

// Writes `data` to `path`, never replacing a file, checked as it is named.
absl::Status WriteNew(const std::string& path, const std::string& data) {
  auto file = VerifiedFileWriter::Create(path);
  if (!file.ok()) return file.status();
  if (absl::Status st = (*file)->Append(data); !st.ok()) return st;
  return (*file)->Commit(data.size(), Sha256(data)).status();
}

// The lines of a report: "  ok   WHAT: detail" or "  FAIL WHAT: message".
void PrintChecks(const CustodyReport& report, std::ostream& out) {
  for (const CustodyCheck& c : report.checks) {
    out << (c.status.ok() ? "  ok   " : "  FAIL ") << c.what;
    const std::string text = c.status.ok() ? c.detail : std::string(c.status.message());
    if (!text.empty()) out << ": " << text;
    out << "\n";
  }
}

JsonValue ChecksJson(const CustodyReport& report) {
  JsonValue checks = JsonValue::Array();
  for (const CustodyCheck& c : report.checks) {
    JsonValue j = JsonValue::Object().Set("what", c.what).Set("ok", c.status.ok());
    if (c.status.ok()) {
      j.Set("detail", c.detail);
    } else {
      j.Set("error", std::string(c.status.message()));
    }
    checks.Add(std::move(j));
  }
  return checks;
}

std::string Summary(const CustodyReport& r, const std::string& package_sha256) {
  return absl::StrCat(r.files, " files, ", r.steps, " signed steps, ", r.log_entries,
                      " entries of ", r.exporting_party,
                      "'s log proven; package.pb sha256 ", HexEncode(package_sha256),
                      " (", r.exporting_party,
                      "'s log records it: CUSTODY_PACKAGE_EXPORTED)");
}

}  // namespace

int ExportCustodyPackage(v1::OperatorService::Stub& stub, const std::string& address,
                         const ExportOptions& o, std::ostream& out, std::ostream& err) {
  auto fail = [&](const CliError& e) { return ReportError(err, o.json, "comity", e); };
  const std::string dir = Absolute(o.dir);
  v1::GetRequestRequest get;
  get.set_id(o.request_id);
  v1::GetRequestResponse found;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(15)));
    grpc::Status status = stub.GetRequest(&ctx, get, &found);
    if (!status.ok()) return fail(RpcCliError(address, status));
  }
  // What the signed responses list, and what of it is held back or not here.
  KeyRing ring;
  FillRing(found.signer_keys(), &ring);
  std::vector<EvidenceView> listed_files;
  std::vector<std::string> pending_conditions;
  std::string responder;
  for (const v1::RequestRecord& r : found.records()) {
    v1::RequestBody body;
    if (body.ParseFromString(r.request().payload())) responder = body.requested_party();
    CaseView view =
        BuildCaseView(r, ring, found.stored_evidence(), found.pending_evidence());
    for (EvidenceView& e : view.evidence) listed_files.push_back(std::move(e));
    for (const std::string& c : view.PendingConditionTexts()) pending_conditions.push_back(c);
  }
  JsonValue held = JsonValue::Array();
  std::vector<std::string> held_names;
  std::vector<std::string> missing_names;
  for (const EvidenceView& e : listed_files) {
    if (e.state == EvidenceState::kAwaitingConditions) {
      held_names.push_back(e.file.name());
      JsonValue pending = JsonValue::Array();
      for (const std::string& c : e.pending_conditions) pending.Add(c);
      held.Add(JsonValue::Object()
                   .Set("name", e.file.name())
                   .Set("sha256", HexEncode(e.file.sha256()))
                   .Set("size", e.file.size())
                   .Set("pending_conditions", std::move(pending)));
    } else if (e.state == EvidenceState::kFetching || e.state == EvidenceState::kGivenUp) {
      missing_names.push_back(e.file.name());
    }
  }
  // Before anything is written: evidence held back by its conditions is an
  // error that names them and the command that releases it.
  const CliError held_back{
      kExitFailure,
      absl::StrCat("the evidence of request ", get.id(), " (", absl::StrJoin(held_names, ", "),
                   ") is held back by ", responder.empty() ? "the responding party" : responder,
                   " until its use conditions are accepted (ETS185 Art 28(2)): ",
                   absl::StrJoin(pending_conditions, "; ")),
      absl::StrCat("read them with 'comity show ", get.id(),
                   "'; to accept them: comity accept-conditions ", get.id())};
  const CliError not_here{
      kExitFailure,
      absl::StrCat("the evidence of request ", get.id(), " (", absl::StrJoin(missing_names, ", "),
                   ") is not here yet: the node fetches and verifies it in the background"),
      absl::StrCat("'comity show ", get.id(), "' follows the fetch; 'comity fetch ", get.id(),
                   "' tries again after the node gave up")};
  if (found.stored_evidence_size() == 0 && !held_names.empty()) return fail(held_back);
  if (found.stored_evidence_size() == 0 && !missing_names.empty()) return fail(not_here);
  // A package directory holds one package: never mixed with another.
  for (const char* name : {kPackageFile, kManifestFile}) {
    struct stat st;
    const std::string path = absl::StrCat(dir, "/", name);
    if (::lstat(path.c_str(), &st) == 0) {
      return fail({kExitFailure, absl::StrCat(path, " exists: ", dir,
                                              " already holds a custody package"),
                   "export each case to a new directory (--out)"});
    }
  }

  JsonValue files = JsonValue::Array();
  v1::ExportCustodyPackageRequest package_req;
  package_req.set_id(get.id());
  package_req.set_destination(dir);
  package_req.set_allow_tlp_red(o.allow_tlp_red);
  for (const v1::StoredEvidence& stored : found.stored_evidence()) {
    // The name and size the responding party's signed step lists.
    v1::EvidenceFile listed;
    listed.set_sha256(stored.sha256());
    bool sized = false;
    for (const auto& r : found.records()) {
      for (const auto& env : r.transitions()) {
        v1::Transition t;
        if (!t.ParseFromString(env.payload())) continue;
        for (const auto& f : t.evidence()) {
          if (f.sha256() == stored.sha256() && !sized) {
            listed = f;
            sized = true;
          }
        }
      }
    }
    const std::string path =
        absl::StrCat(dir, "/", CustodyPath(listed.name(), listed.sha256()));
    auto file = VerifiedFileWriter::Create(path);
    if (!file.ok()) return fail({kExitFailure, std::string(file.status().message())});
    grpc::ClientContext ctx;
    v1::ExportEvidenceRequest req;
    req.set_id(get.id());
    req.set_sha256(stored.sha256());
    req.set_allow_tlp_red(o.allow_tlp_red);
    auto reader = stub.ExportEvidence(&ctx, req);
    v1::EvidenceChunk chunk;
    absl::Status written = absl::OkStatus();
    while (written.ok() && reader->Read(&chunk)) written = (*file)->Append(chunk.data());
    if (!written.ok()) ctx.TryCancel();
    grpc::Status status = reader->Finish();
    if (!written.ok()) return fail({kExitFailure, std::string(written.message())});
    if (!status.ok()) return fail(RpcCliError(address, status));
    // Checked against the hash asked for and the size the step declares.
    auto sha256 = (*file)->Commit(
        sized ? std::optional<uint64_t>(listed.size()) : std::nullopt, stored.sha256());
    if (!sha256.ok()) return fail({kExitFailure, std::string(sha256.status().message())});
    const uint64_t bytes = (*file)->size();
    package_req.add_files(stored.sha256());
    if (o.json) {
      files.Add(JsonValue::Object()
                    .Set("name", listed.name())
                    .Set("path", path)
                    .Set("bytes", bytes)
                    .Set("sha256", *sha256));
    } else {
      out << WroteLine(path, bytes, *sha256) << "\n";
    }
  }

  // The node's package of the case, then the manifest formed from it.
  v1::ExportCustodyPackageResponse package;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    grpc::Status status = stub.ExportCustodyPackage(&ctx, package_req, &package);
    if (!status.ok()) return fail(RpcCliError(address, status));
  }
  v1::CustodyPackage parsed;
  if (Sha256(package.package()) != package.sha256() ||
      !parsed.ParseFromString(package.package())) {
    return fail({kExitFailure, "the node's custody package does not match its SHA-256 or "
                               "does not parse; nothing was written for it"});
  }
  const std::string package_path = absl::StrCat(dir, "/", kPackageFile);
  const std::string manifest_path = absl::StrCat(dir, "/", kManifestFile);
  for (const auto& [path, data] :
       {std::pair<std::string, std::string>{package_path, package.package()},
        {manifest_path, CustodyManifestText(parsed, package.sha256())}}) {
    if (absl::Status st = WriteNew(path, data); !st.ok()) {
      return fail({kExitFailure, std::string(st.message())});
    }
  }
  // Checked as a court would check it, before it is reported as written.
  std::string verified_sha;
  CustodyReport report = VerifyPackageDir(dir, &verified_sha);
  if (o.json) {
    JsonValue missing = JsonValue::Array();
    for (const std::string& n : missing_names) missing.Add(n);
    out << JsonValue::Object()
               .Set("id", get.id())
               .Set("out", dir)
               .Set("files", std::move(files))
               .Set("held_back", std::move(held))
               .Set("not_here", std::move(missing))
               .Set("package", JsonValue::Object()
                                   .Set("path", package_path)
                                   .Set("bytes", package.package().size())
                                   .Set("sha256", HexEncode(package.sha256())))
               .Set("manifest", manifest_path)
               .Set("verified", report.ok())
               .Set("checks", ChecksJson(report))
               .Dump()
        << "\n";
  } else {
    if (listed_files.empty()) {
      out << "(no evidence in this case: no response lists a file; the package holds its "
             "signed steps)\n";
    }
    out << WroteLine(package_path, package.package().size(), HexEncode(package.sha256()))
        << "\n"
        << "wrote " << manifest_path << "\n";
    if (report.ok()) {
      out << "custody package of request " << get.id() << " verified: "
          << Summary(report, verified_sha) << "\n"
          << "check it on any machine: comity verify-package " << dir << "\n";
    }
  }
  if (!report.ok()) {
    return fail({kExitFailure,
                 absl::StrCat("the custody package written to ", dir,
                              " does not verify: ", report.FirstFailure()),
                 absl::StrCat("comity verify-package ", dir, " lists every check")});
  }
  // What was written stays; what could not be is still an error.
  if (!held_names.empty()) return fail(held_back);
  if (!missing_names.empty()) return fail(not_here);
  return kExitOk;
}

int RunVerifyPackageCli(const std::vector<std::string>& args, std::ostream& out,
                        std::ostream& err) {
  const bool json = WantsJson(args);
  FlagSpec spec;
  spec.switches = {"json", "help"};
  absl::StatusOr<ParsedArgs> parsed = ParseArgs(args, spec);
  if (!parsed.ok()) {
    int code = ReportError(err, json, "comity",
                           {kExitUsage,
                            absl::StrCat(parsed.status().message(), " (for verify-package)"),
                            "comity verify-package --help"});
    if (!json) err << "\n" << UsageText("verify-package");
    return code;
  }
  if (parsed->switches.count("help")) {
    out << UsageText("verify-package");
    return kExitOk;
  }
  if (parsed->positional.size() != 1) {
    return ReportError(err, json, "comity",
                       {kExitUsage, "verify-package takes exactly one directory",
                        "comity verify-package DIR (a directory comity export wrote)"});
  }
  const std::string dir = parsed->positional[0];
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return ReportError(err, json, "comity",
                       {kExitUsage, absl::StrCat(dir, " is not a directory"),
                        "comity verify-package DIR (a directory comity export wrote)"});
  }
  std::string sha256;
  CustodyReport report = VerifyPackageDir(dir, &sha256);
  if (json) {
    out << JsonValue::Object()
               .Set("dir", dir)
               .Set("ok", report.ok())
               .Set("request_id", report.request_id)
               .Set("requesting_party", report.requesting_party)
               .Set("requested_party", report.requested_party)
               .Set("exported_by_party", report.exporting_party)
               .Set("package_sha256", sha256.empty() ? std::string() : HexEncode(sha256))
               .Set("files", report.files)
               .Set("steps", report.steps)
               .Set("log_entries", report.log_entries)
               .Set("checks", ChecksJson(report))
               .Set("first_failure", report.FirstFailure())
               .Dump()
        << "\n";
  } else {
    out << "custody package in " << dir;
    if (!report.request_id.empty()) {
      out << ": request " << report.request_id << " from " << report.requesting_party
          << " to " << report.requested_party << ", exported by " << report.exporting_party;
    }
    out << "\n";
    PrintChecks(report, out);
    if (report.ok()) {
      out << "verified: " << Summary(report, sha256) << "\n"
          << "compare the key fingerprints above with those each party publishes\n";
    } else {
      out << "NOT verified: " << report.FirstFailure() << "\n";
    }
  }
  return report.ok() ? kExitOk : kExitFailure;
}

}  // namespace comity
