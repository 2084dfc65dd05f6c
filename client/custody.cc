#include "client/custody.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "client/case_view.h"
#include "comity/v1/audit.pb.h"
#include "comity/v1/case.pb.h"
#include "comity/v1/request.pb.h"
#include "google/protobuf/util/time_util.h"
#include "server/audit/receipt.h"
#include "server/crypto/ed25519.h"
#include "server/crypto/sha256.h"
#include "server/util/files.h"
#include "server/util/hex.h"

namespace comity {
namespace {

std::string Time(int64_t unix_micros) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", absl::FromUnixMicros(unix_micros),
                          absl::UTCTimeZone());
}

JsonValue Strings(const google::protobuf::RepeatedPtrField<std::string>& list) {
  JsonValue a = JsonValue::Array();
  for (const std::string& s : list) a.Add(s);
  return a;
}

JsonValue Signer(const v1::SignedEnvelope& env) {
  return JsonValue::Object().Set("party", env.signer_party()).Set("key_id", env.key_id());
}

JsonValue StepJson(const v1::SignedEnvelope& env) {
  JsonValue s = JsonValue::Object();
  v1::Transition t;
  if (!t.ParseFromString(env.payload())) {
    return s.Set("error", "the step's payload is not a comity.v1.Transition");
  }
  s.Set("sequence", t.sequence())
      .Set("action", v1::CaseAction_Name(t.action()))
      .Set("state", v1::CaseState_Name(t.to_state()))
      .Set("party", t.party())
      .Set("operator", t.operator_name())
      .Set("time", Time(t.time_unix_micros()))
      .Set("signed_by", Signer(env))
      .Set("payload_sha256", HexEncode(Sha256(env.payload())));
  if (t.has_proposal()) s.Set("proposal_signed_by", Signer(t.proposal()));
  if (!t.text().empty()) s.Set("text", t.text());
  if (t.refusal_grounds_size() > 0) {
    JsonValue grounds = JsonValue::Array();
    for (int g : t.refusal_grounds()) grounds.Add(v1::RefusalGround_Name(g));
    s.Set("refusal_grounds", std::move(grounds)).Set("reasons", t.reasons());
  }
  if (t.action() == v1::RESPOND) s.Set("final_response", t.final_response());
  if (t.release_conditions_size() > 0) {
    s.Set("release_conditions", Strings(t.release_conditions()));
  }
  if (t.accepted_conditions_size() > 0) {
    s.Set("accepted_conditions", Strings(t.accepted_conditions()));
  }
  if (t.evidence_size() > 0) {
    JsonValue files = JsonValue::Array();
    for (const v1::EvidenceFile& f : t.evidence()) files.Add(EvidenceFileJson(f));
    s.Set("evidence", std::move(files));
  }
  return s;
}

// SHA-256 and size of the regular file `path`, streamed; a link is refused.
absl::StatusOr<FileDigest> DigestOf(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    if (e == ENOENT) return absl::NotFoundError("it is missing");
    if (e == ELOOP) return absl::InvalidArgumentError("it is a symbolic link, not the file");
    return absl::PermissionDeniedError(absl::StrCat("cannot open it: ", std::strerror(e)));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError("it is not a regular file");
  }
  Sha256Stream h;
  FileDigest d;
  std::vector<char> buf(1 << 20);
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      ::close(fd);
      return absl::DataLossError(absl::StrCat("reading it failed: ", std::strerror(e)));
    }
    if (n == 0) break;
    h.Update(absl::string_view(buf.data(), static_cast<size_t>(n)));
    d.size += static_cast<uint64_t>(n);
  }
  ::close(fd);
  d.sha256 = h.Finish();
  return d;
}

// The first line where `a` and `b` differ, from 1.
size_t FirstDifferentLine(const std::string& a, const std::string& b) {
  std::vector<absl::string_view> la = absl::StrSplit(a, '\n');
  std::vector<absl::string_view> lb = absl::StrSplit(b, '\n');
  size_t i = 0;
  while (i < la.size() && i < lb.size() && la[i] == lb[i]) ++i;
  return i + 1;
}

}  // namespace

JsonValue CustodyManifest(const v1::CustodyPackage& p, const std::string& package_sha256) {
  JsonValue m = JsonValue::Object();
  m.Set("format", absl::StrCat("comity custody package ", p.format_version()))
      .Set("package", kPackageFile)
      .Set("package_sha256", HexEncode(package_sha256))
      .Set("request_id", p.request_id())
      .Set("exported_by_party", p.party())
      .Set("exported_by", p.exported_by())
      .Set("exported_at", Time(p.exported_at_unix_micros()))
      .Set("destination", p.destination());
  v1::RequestBody body;
  JsonValue request = JsonValue::Object();
  if (body.ParseFromString(p.request().payload())) {
    request.Set("requesting_party", body.requesting_party())
        .Set("requested_party", body.requested_party())
        .Set("type", v1::AssistanceType_Name(body.assistance_type()))
        .Set("offence", v1::OffenceCategory_Name(body.offence().category()))
        .Set("authority", body.particulars().requesting_authority())
        .Set("created_at", Time(google::protobuf::util::TimeUtil::TimestampToMicroseconds(
                               body.created_at())))
        .Set("tlp", v1::Tlp_Name(body.handling().tlp()));
  }
  request.Set("signed_by", Signer(p.request()))
      .Set("payload_sha256", HexEncode(Sha256(p.request().payload())));
  m.Set("request", std::move(request));
  v1::Receipt receipt;
  if (p.has_receipt() && ParseReceipt(p.receipt(), &receipt)) {
    m.Set("receipt",
          JsonValue::Object()
              .Set("received_at", Time(google::protobuf::util::TimeUtil::TimestampToMicroseconds(
                                      receipt.received_at())))
              .Set("signed_by", JsonValue::Object()
                                    .Set("party", p.receipt().signer_party())
                                    .Set("key_id", ReceiptKeyId(p.receipt())))
              .Set("receiver_log_entry", receipt.received_entry_proof().leaf_index())
              .Set("receiver_log_size", receipt.received_entry_proof().tree_size()));
  } else {
    m.Set("receipt", nullptr);
  }
  JsonValue steps = JsonValue::Array();
  for (const v1::SignedEnvelope& env : p.transitions()) steps.Add(StepJson(env));
  m.Set("steps", std::move(steps));
  JsonValue acks = JsonValue::Array();
  for (const v1::SignedEnvelope& env : p.acknowledgements()) {
    v1::Acknowledgement a;
    if (!a.ParseFromString(env.payload())) continue;
    acks.Add(JsonValue::Object()
                 .Set("step", a.sequence())
                 .Set("received_at", Time(a.received_at_unix_micros()))
                 .Set("signed_by", Signer(env)));
  }
  m.Set("acknowledgements", std::move(acks));
  JsonValue files = JsonValue::Array();
  for (const v1::CustodyFile& f : p.files()) {
    files.Add(JsonValue::Object()
                  .Set("path", f.path())
                  .Set("name", f.name())
                  .Set("sha256", HexEncode(f.sha256()))
                  .Set("size", f.size())
                  .Set("respond_step", f.respond_step())
                  .Set("release_conditions", Strings(f.release_conditions()))
                  .Set("accepted_in_step", f.accepted_in_step()));
  }
  m.Set("files", std::move(files));
  JsonValue keys = JsonValue::Array();
  for (const v1::PublicKey& k : p.keys()) {
    keys.Add(JsonValue::Object()
                 .Set("party", k.party())
                 .Set("key_id", k.key_id())
                 .Set("fingerprint", KeyFingerprint(k.ed25519_public_key())));
  }
  m.Set("keys", std::move(keys));
  v1::TreeHead head;
  head.ParseFromString(p.tree_head().payload());
  JsonValue entries = JsonValue::Array();
  for (const v1::ProvenEntry& pe : p.entries()) {
    v1::AuditEntry e;
    if (!e.ParseFromString(pe.entry())) continue;
    JsonValue hashes = JsonValue::Array();
    for (const std::string& h : e.hashes()) hashes.Add(HexEncode(h));
    entries.Add(JsonValue::Object()
                    .Set("index", e.index())
                    .Set("type", v1::AuditEventType_Name(e.type()))
                    .Set("time", Time(e.time_unix_micros()))
                    .Set("actor", e.actor())
                    .Set("hashes", std::move(hashes))
                    .Set("detail", e.detail()));
  }
  m.Set("log", JsonValue::Object()
                   .Set("party", head.party())
                   .Set("tree_size", head.tree_size())
                   .Set("root", HexEncode(head.root_hash()))
                   .Set("signed_at", Time(head.timestamp_unix_micros()))
                   .Set("signed_by", Signer(p.tree_head()))
                   .Set("entries", std::move(entries)));
  m.Set("verify", "comity verify-package DIR (offline; compare the key fingerprints with "
                  "those each party publishes)");
  return m;
}

std::string CustodyManifestText(const v1::CustodyPackage& package,
                                const std::string& package_sha256) {
  return CustodyManifest(package, package_sha256).DumpIndented() + "\n";
}

CustodyReport VerifyPackageDir(const std::string& dir, std::string* package_sha256) {
  const std::string package_path = absl::StrCat(dir, "/", kPackageFile);
  CustodyReport report;
  absl::StatusOr<FileDigest> size = DigestOf(package_path);
  absl::StatusOr<std::string> bytes =
      size.ok() && size->size > kMaxPackageBytes
          ? absl::StatusOr<std::string>(absl::ResourceExhaustedError(
                absl::StrCat("it is ", size->size, " bytes, over ", kMaxPackageBytes)))
          : (size.ok() ? ReadFile(package_path) : absl::StatusOr<std::string>(size.status()));
  if (!bytes.ok()) {
    report.checks.push_back(
        {kPackageFile,
         absl::Status(bytes.status().code(),
                      absl::StrCat(bytes.status().message(), ": ", dir,
                                   " is not a custody package written by comity export")),
         ""});
    return report;
  }
  const std::string sha256 = Sha256(*bytes);
  if (package_sha256 != nullptr) *package_sha256 = sha256;
  report = VerifyCustodyPackage(
      *bytes, [&](const std::string& path) { return DigestOf(absl::StrCat(dir, "/", path)); });
  v1::CustodyPackage p;
  if (!p.ParseFromString(*bytes)) return report;

  // The manifest people read must be the one the signed parts give.
  absl::StatusOr<std::string> manifest = ReadFile(absl::StrCat(dir, "/", kManifestFile));
  const std::string expected = CustodyManifestText(p, sha256);
  absl::Status mst = absl::OkStatus();
  if (!manifest.ok()) {
    mst = absl::NotFoundError("it is missing or unreadable (comity export writes it)");
  } else if (*manifest != expected) {
    mst = absl::DataLossError(absl::StrCat(
        "it differs from what package.pb holds, from line ",
        FirstDifferentLine(*manifest, expected),
        ": it was edited after export (package.pb is what the signatures cover)"));
  }
  report.checks.push_back({kManifestFile, mst, mst.ok() ? "formed from package.pb" : ""});

  // Nothing in evidence/ that the package does not list.
  std::set<std::string> listed;
  for (const v1::CustodyFile& f : p.files()) listed.insert(f.path());
  if (DIR* d = ::opendir(absl::StrCat(dir, "/evidence").c_str()); d != nullptr) {
    std::vector<std::string> extra;
    while (const dirent* ent = ::readdir(d)) {
      const std::string name = ent->d_name;
      if (name == "." || name == "..") continue;
      if (listed.count("evidence/" + name) == 0) extra.push_back("evidence/" + name);
    }
    ::closedir(d);
    std::sort(extra.begin(), extra.end());
    for (const std::string& e : extra) {
      report.checks.push_back(
          {e, absl::FailedPreconditionError("it is not a file of the package"), ""});
    }
  }
  return report;
}

}  // namespace comity
