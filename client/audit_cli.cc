#include "client/audit_cli.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "client/args.h"
#include "client/audit_page.h"
#include "client/connection.h"
#include "client/list_pages.h"
#include "client/output.h"
#include "client/usage.h"
#include "comity/v1/audit.pb.h"
#include "comity/v1/operator.grpc.pb.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "server/audit/merkle.h"
#include "server/audit/verifier.h"
#include "server/core/envelope.h"
#include "server/crypto/ed25519.h"
#include "server/crypto/sha256.h"
#include "server/util/files.h"
#include "server/util/posix_file.h"
#include "server/util/status_macros.h"
#include "server/util/hex.h"

namespace comity {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;

// One entry as JSON: its fields by their .proto names, the index as a
// number, the time as RFC 3339 with microseconds, hashes in hex.
JsonValue EntryJsonValue(const v1::AuditEntry& e) {
  JsonValue f = JsonValue::Object();
  f.Set("index", e.index());
  f.Set("time", absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ",
                                 absl::FromUnixMicros(e.time_unix_micros()),
                                 absl::UTCTimeZone()));
  // The other fields as protobuf's JSON mapping names them (every field
  // of AuditEntry that is set), read back from its printer.
  v1::AuditEntry rest = e;
  rest.clear_index();
  rest.clear_time_unix_micros();
  rest.clear_hashes();
  std::string json;
  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = true;
  Value v;
  if (google::protobuf::util::MessageToJsonString(rest, &json, opts).ok() &&
      google::protobuf::util::JsonStringToMessage(json, v.mutable_struct_value()).ok()) {
    JsonValue fields = JsonValue::FromProtoValue(v);
    for (size_t i = 0; i < fields.size(); ++i) f.Set(fields.KeyAt(i), fields.At(i));
  }
  if (e.hashes_size() > 0) {
    JsonValue hashes = JsonValue::Array();
    for (const auto& h : e.hashes()) hashes.Add(HexEncode(h));
    f.Set("hashes", std::move(hashes));
  }
  return f;
}

std::string EntryJson(const v1::AuditEntry& e) { return EntryJsonValue(e).Dump(); }

std::string EntryLine(const v1::AuditEntry& e) {
  std::string line = absl::StrCat(
      e.index(), "  ",
      absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixMicros(e.time_unix_micros()),
                       absl::UTCTimeZone()),
      "  ", v1::AuditEventType_Name(e.type()), "  ", e.actor());
  if (!e.request_id().empty()) absl::StrAppend(&line, "  request ", e.request_id());
  if (!e.party().empty()) absl::StrAppend(&line, "  party ", e.party());
  if (!e.instrument().empty() || e.obligation() != v1::OBLIGATION_UNSPECIFIED) {
    absl::StrAppend(&line, "  ", v1::Obligation_Name(e.obligation()), " ", e.instrument());
  }
  if (!e.detail().empty()) absl::StrAppend(&line, "  (", e.detail(), ")");
  return line;
}

// A file written as a stream: into a temporary file beside `path`, named
// `path` only once complete and durable (Commit); removed if not committed.
class StreamedFile {
 public:
  static absl::StatusOr<std::unique_ptr<StreamedFile>> Create(const std::string& path) {
    COMITY_ASSIGN_OR_RETURN(auto temp, CreateTempFileBeside(path));
    return std::unique_ptr<StreamedFile>(new StreamedFile(path, temp.first, temp.second));
  }
  ~StreamedFile() {
    if (!committed_) RemoveIfExists(temp_).IgnoreError();
  }
  absl::Status Write(absl::string_view data) { return WriteAll(fd_.get(), data, temp_); }
  absl::Status Commit() {
    if (::fsync(fd_.get()) != 0) return IoError(errno, absl::StrCat("fsync ", temp_));
    if (fd_.Close() != 0) return IoError(errno, absl::StrCat("close ", temp_));
    COMITY_RETURN_IF_ERROR(RenameFile(temp_, path_, /*replace=*/true));
    committed_ = true;
    const size_t slash = path_.rfind('/');
    return SyncDir(slash == std::string::npos ? "." : path_.substr(0, std::max<size_t>(slash, 1)));
  }

 private:
  StreamedFile(std::string path, int fd, std::string temp)
      : path_(std::move(path)), fd_(fd), temp_(std::move(temp)) {}
  std::string path_;
  ScopedFd fd_;
  std::string temp_;
  bool committed_ = false;
};

class AuditCli {
 public:
  AuditCli(const GetEnv& env, std::ostream& out, std::ostream& err)
      : env_(env), out_(out), err_(err) {}
  int Run(const std::vector<std::string>& args);

 private:
  int Fail(int code, absl::string_view message, absl::string_view hint = "") {
    return ReportError(err_, json_, "comity",
                       CliError(code, std::string(message), std::string(hint)));
  }
  int Rpc(const grpc::Status& status) {
    return ReportError(err_, json_, "comity", RpcCliError(address_, status));
  }
  std::unique_ptr<grpc::ClientContext> Context(int seconds = 60) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(seconds)));
    return ctx;
  }
  int Verify(const ParsedArgs& a);
  int VerifyBundleFile(const std::string& path);
  int Log(const ParsedArgs& a);
  int Prove(const ParsedArgs& a);
  int Consistency(const ParsedArgs& a);
  int Export(const ParsedArgs& a);
  int Stats(const ParsedArgs& a);
  int Head(const ParsedArgs& a);
  // Calls `fn` with each signed head of the node's log, by tree size, a
  // page at a time, each verified with the node's keys (added to `keys`).
  absl::Status ForEachHead(KeyRing* keys,
                           const std::function<void(const v1::TreeHead&)>& fn);

  const GetEnv& env_;
  std::ostream& out_;
  std::ostream& err_;
  bool json_ = false;
  std::string address_;
  std::unique_ptr<v1::AuditService::Stub> stub_;
};

int AuditCli::Run(const std::vector<std::string>& args) {
  json_ = WantsJson(args);  // Even a usage error is JSON then.
  const std::string command = FindCommand(args, {"connect"});
  FlagSpec spec;
  spec.with_value = {"connect"};
  spec.switches = {"json", "help"};
  size_t positional = 0;
  if (command == "verify") {
    spec.with_value.insert("bundle");
  } else if (command == "log") {
    spec.with_value.insert({"request", "party", "type", "actor", "since", "until", "from", "limit"});
  } else if (command == "prove") {
    spec.with_value.insert("size");
    positional = 1;
  } else if (command == "consistency") {
    positional = 2;
  } else if (command == "export") {
    spec.with_value.insert("out");
  } else if (command == "stats" || command == "head") {
  } else if (command == "serve") {
    spec.with_value.insert("listen");
  } else if (command == "help") {
    out_ << UsageText("audit");
    return kExitOk;
  } else if (command.empty()) {
    if (json_) return Fail(kExitUsage, "audit needs a command", "comity audit help");
    out_ << UsageText("audit");
    return kExitUsage;
  } else {
    return Fail(kExitUsage,
                absl::StrCat("unknown audit command '", command,
                             "'; commands: verify, log, prove, consistency, export, stats, head, "
                             "serve"));
  }
  auto parsed = ParseSubcommand(args, spec, "audit", command);
  if (!parsed.ok()) return Fail(kExitUsage, parsed.status().message());
  if (parsed->switches.count("help")) {
    out_ << UsageText("audit " + command);
    return kExitOk;
  }
  json_ = parsed->switches.count("json") != 0;
  if (parsed->positional.size() != positional) {
    return Fail(kExitUsage, command == "prove"         ? "audit prove takes one entry index"
                            : command == "consistency" ? "audit consistency takes OLD NEW sizes"
                                                       : absl::StrCat("unexpected argument '",
                                                                      parsed->positional[0], "'"));
  }
  if (command == "verify" && parsed->Has("bundle")) return VerifyBundleFile(parsed->Get("bundle"));
  if (command == "serve") return RunAuditServe(*parsed, env_, out_, err_);
  auto connection = ConnectToNode(*parsed, env_);
  if (!connection.ok()) {
    return Fail(kExitUsage, connection.status().message(),
                "--connect names a comity.v1.ClientConfig (docs/configuration.md)");
  }
  address_ = connection->address;
  stub_ = v1::AuditService::NewStub(connection->channel);
  if (command == "verify") return Verify(*parsed);
  if (command == "log") return Log(*parsed);
  if (command == "prove") return Prove(*parsed);
  if (command == "consistency") return Consistency(*parsed);
  if (command == "export") return Export(*parsed);
  if (command == "stats") return Stats(*parsed);
  return Head(*parsed);
}

int AuditCli::Verify(const ParsedArgs&) {
  auto ctx = Context(600);
  v1::VerifyAuditLogResponse resp;
  grpc::Status st = stub_->Verify(ctx.get(), v1::VerifyAuditLogRequest(), &resp);
  if (!st.ok()) return Rpc(st);
  if (json_) {
    out_ << JsonValue::Object()
                .Set("ok", resp.ok())
                .Set("entries", resp.entries())
                .Set("root", HexEncode(resp.root()))
                .Set("heads", resp.heads())
                .Set("error", resp.error())
                .Set("summary", resp.summary())
                .Dump()
         << "\n";
  } else {
    out_ << resp.summary() << "\n";
  }
  return resp.ok() ? kExitOk : kExitFailure;
}

int AuditCli::VerifyBundleFile(const std::string& path) {
  // Read incrementally: a bundle of any size in bounded memory.
  BundleInfo bundle;
  auto verified = comity::VerifyBundleFile(path, &bundle);
  if (!verified.ok()) {
    return Fail(absl::IsNotFound(verified.status()) ? kExitUsage : kExitFailure,
                verified.status().message());
  }
  const VerifyReport& report = *verified;
  std::vector<std::string> keys;
  for (const auto& k : bundle.public_keys) {
    keys.push_back(absl::StrCat(k.party(), " ", k.key_id(), " ",
                                KeyFingerprint(k.ed25519_public_key())));
  }
  if (json_) {
    JsonValue fingerprints = JsonValue::Array();
    for (const std::string& k : keys) fingerprints.Add(k);
    out_ << JsonValue::Object()
                .Set("ok", report.ok)
                .Set("party", bundle.party)
                .Set("entries", report.entries)
                .Set("root", HexEncode(report.root))
                .Set("heads", report.heads)
                .Set("keys", std::move(fingerprints))
                .Set("summary", report.Summary())
                .Dump()
         << "\n";
  } else {
    out_ << "bundle of " << bundle.party << "'s log, checked offline with its keys ("
         << absl::StrJoin(keys, "; ")
         << "): compare these fingerprints with the party's published keys\n";
    out_ << report.Summary() << "\n";
  }
  return report.ok ? kExitOk : kExitFailure;
}

absl::Status AuditCli::ForEachHead(KeyRing* keys,
                                   const std::function<void(const v1::TreeHead&)>& fn) {
  bool have_keys = false;
  absl::Status bad;
  grpc::Status st = ForEachTreeHeadPage(
      *stub_, absl::Seconds(60), [&](const v1::GetTreeHeadsResponse& page) {
        if (!have_keys) {
          for (const auto& k : page.keys()) {
            bad = keys->Add(k.party(), k.key_id(), k.ed25519_public_key());
            if (!bad.ok()) return false;
          }
          have_keys = true;
        }
        for (const auto& env : page.heads()) {
          bad = VerifyEnvelope(env, kTreeHeadPayloadType, *keys);
          if (!bad.ok()) return false;
          v1::TreeHead h;
          h.ParseFromString(env.payload());
          fn(h);
        }
        return true;
      });
  if (!st.ok()) {
    return absl::Status(NodeUnreachable(st) ? absl::StatusCode::kUnavailable
                                            : absl::StatusCode::kFailedPrecondition,
                        DescribeRpcError(address_, st));
  }
  return bad;
}

int AuditCli::Log(const ParsedArgs& a) {
  v1::GetAuditEntriesRequest req;
  req.set_request_id(a.Get("request"));
  req.set_party(a.Get("party"));
  req.set_actor(a.Get("actor"));
  if (a.Has("type")) {
    auto type = ParseEnum<v1::AuditEventType>(v1::AuditEventType_descriptor(), "type",
                                              a.Get("type"));
    if (!type.ok()) return Fail(kExitUsage, type.status().message());
    req.set_type(*type);
  }
  for (auto [flag, setter] :
       {std::pair<const char*, void (v1::GetAuditEntriesRequest::*)(int64_t)>{
            "since", &v1::GetAuditEntriesRequest::set_from_time_unix_micros},
        {"until", &v1::GetAuditEntriesRequest::set_to_time_unix_micros}}) {
    if (!a.Has(flag)) continue;
    absl::Time t;
    std::string err;
    if (!absl::ParseTime("%Y-%m-%d", a.Get(flag), &t, &err) &&
        !absl::ParseTime(absl::RFC3339_full, a.Get(flag), &t, &err)) {
      return Fail(kExitUsage, absl::StrCat("--", flag, " '", a.Get(flag),
                                           "' is not a date (YYYY-MM-DD) or RFC 3339 time"));
    }
    (req.*setter)(absl::ToUnixMicros(t));
  }
  for (auto [flag, setter] :
       {std::pair<const char*, void (v1::GetAuditEntriesRequest::*)(uint64_t)>{
            "from", &v1::GetAuditEntriesRequest::set_from_index},
        {"limit", &v1::GetAuditEntriesRequest::set_limit}}) {
    if (!a.Has(flag)) continue;
    uint64_t n = 0;
    if (!absl::SimpleAtoi(a.Get(flag), &n)) {
      return Fail(kExitUsage, absl::StrCat("--", flag, " '", a.Get(flag), "' is not a number"));
    }
    (req.*setter)(n);
  }
  // --limit: how many to show in all (0 or none: every one), a page at a time.
  const uint64_t limit = req.limit();
  req.set_limit(0);
  uint64_t shown = 0, tree_size = 0;
  grpc::Status st = ReadAuditEntries(
      *stub_, req, limit, absl::Seconds(60),
      [&](std::string bytes) {
        v1::AuditEntry e;
        e.ParseFromString(bytes);
        out_ << (json_ ? EntryJson(e) : EntryLine(e)) << "\n";
        ++shown;
      },
      &tree_size);
  if (!st.ok()) return Rpc(st);
  if (!json_) out_ << "(" << shown << " of " << tree_size << " entries)\n";
  return kExitOk;
}

int AuditCli::Prove(const ParsedArgs& a) {
  uint64_t index = 0, size = 0;
  if (!absl::SimpleAtoi(a.positional[0], &index)) {
    return Fail(kExitUsage, absl::StrCat("entry '", a.positional[0], "' is not an index"));
  }
  if (a.Has("size") && !absl::SimpleAtoi(a.Get("size"), &size)) {
    return Fail(kExitUsage, "--size is not a number");
  }
  KeyRing keys;
  std::optional<v1::TreeHead> found;
  absl::Status heads = ForEachHead(&keys, [&](const v1::TreeHead& h) {
    if (a.Has("size") ? h.tree_size() == size
                      : h.tree_size() > index &&
                            (!found.has_value() || h.tree_size() > found->tree_size())) {
      found = h;
    }
  });
  if (!heads.ok()) {
    return Fail(absl::IsUnavailable(heads) ? kExitUnreachable : kExitFailure, heads.message());
  }
  const v1::TreeHead* head = found.has_value() ? &*found : nullptr;
  if (head == nullptr) {
    return Fail(kExitFailure, absl::StrCat("no signed tree head covers entry ", index,
                                           a.Has("size") ? " at that size" : "",
                                           "; sign one with 'comity audit head'"));
  }
  v1::GetAuditProofRequest req;
  req.set_index(index);
  req.set_tree_size(head->tree_size());
  auto ctx = Context();
  v1::GetAuditProofResponse resp;
  grpc::Status st = stub_->GetProof(ctx.get(), req, &resp);
  if (!st.ok()) return Rpc(st);
  std::vector<std::string> proof(resp.hashes().begin(), resp.hashes().end());
  absl::Status ok = merkle::VerifyInclusion(index, head->tree_size(),
                                            merkle::LeafHash(resp.entry()), proof,
                                            head->root_hash());
  v1::AuditEntry e;
  e.ParseFromString(resp.entry());
  if (json_) {
    JsonValue hex = JsonValue::Array();
    for (const auto& h : proof) hex.Add(HexEncode(h));
    JsonValue j = JsonValue::Object();
    j.Set("index", index)
        .Set("tree_size", head->tree_size())
        .Set("root", HexEncode(head->root_hash()))
        .Set("leaf_hash", HexEncode(merkle::LeafHash(resp.entry())))
        .Set("proof", std::move(hex))
        .Set("verified", ok.ok());
    if (!ok.ok()) j.Set("error", ok.ToString());
    j.Set("entry", EntryJsonValue(e));
    out_ << j.Dump() << "\n";
  } else {
    out_ << "entry " << EntryLine(e) << "\n"
         << "in the signed tree head of size " << head->tree_size() << ", root "
         << HexEncode(head->root_hash()) << "\n";
    for (size_t i = 0; i < proof.size(); ++i) out_ << "  " << i << ": " << HexEncode(proof[i]) << "\n";
    out_ << (ok.ok() ? "inclusion proof verified" : "inclusion proof FAILED: " + ok.ToString())
         << "\n";
  }
  return ok.ok() ? kExitOk : kExitFailure;
}

int AuditCli::Consistency(const ParsedArgs& a) {
  uint64_t old_size = 0, new_size = 0;
  if (!absl::SimpleAtoi(a.positional[0], &old_size) ||
      !absl::SimpleAtoi(a.positional[1], &new_size) || old_size > new_size) {
    return Fail(kExitUsage, "audit consistency takes two sizes, OLD <= NEW");
  }
  v1::GetAuditProofRequest req;
  req.set_consistency(true);
  req.set_old_size(old_size);
  req.set_tree_size(new_size);
  auto ctx = Context();
  v1::GetAuditProofResponse resp;
  grpc::Status st = stub_->GetProof(ctx.get(), req, &resp);
  if (!st.ok()) return Rpc(st);
  std::vector<std::string> proof(resp.hashes().begin(), resp.hashes().end());
  absl::Status ok =
      merkle::VerifyConsistency(old_size, new_size, resp.old_root(), resp.root(), proof);
  // Where signed heads exist for these sizes, the roots must be theirs.
  KeyRing keys;
  ForEachHead(&keys, [&](const v1::TreeHead& h) {
    if ((h.tree_size() == old_size && h.root_hash() != resp.old_root()) ||
        (h.tree_size() == new_size && h.root_hash() != resp.root())) {
      ok = absl::DataLossError(absl::StrCat("the root at size ", h.tree_size(),
                                            " differs from the signed tree head's"));
    }
  }).IgnoreError();  // Without heads the proof stands on its own, as before.
  if (json_) {
    JsonValue hex = JsonValue::Array();
    for (const auto& h : proof) hex.Add(HexEncode(h));
    JsonValue j = JsonValue::Object();
    j.Set("old_size", old_size)
        .Set("new_size", new_size)
        .Set("old_root", HexEncode(resp.old_root()))
        .Set("new_root", HexEncode(resp.root()))
        .Set("proof", std::move(hex))
        .Set("verified", ok.ok());
    if (!ok.ok()) j.Set("error", ok.ToString());
    out_ << j.Dump() << "\n";
  } else {
    out_ << "size " << old_size << " root " << HexEncode(resp.old_root()) << "\nsize "
         << new_size << " root " << HexEncode(resp.root()) << "\n";
    for (size_t i = 0; i < proof.size(); ++i) out_ << "  " << i << ": " << HexEncode(proof[i]) << "\n";
    out_ << (ok.ok() ? "consistency proof verified" : "consistency proof FAILED: " + ok.ToString())
         << "\n";
  }
  return ok.ok() ? kExitOk : kExitFailure;
}

int AuditCli::Export(const ParsedArgs& a) {
  if (!a.Has("out")) return Fail(kExitUsage, "audit export needs --out PREFIX");
  const std::string prefix = a.Get("out");
  // Each message of the stream goes to the files as it arrives: the bundle
  // file is the messages' serializations one after the other, which parse
  // as the one AuditBundle they merge into (docs/audit_log.md).
  auto bundle_file = StreamedFile::Create(prefix + ".bundle");
  if (!bundle_file.ok()) return Fail(kExitFailure, bundle_file.status().message());
  auto jsonl_file = StreamedFile::Create(prefix + ".jsonl");
  if (!jsonl_file.ok()) return Fail(kExitFailure, jsonl_file.status().message());
  auto ctx = Context(3600);
  auto reader = stub_->Export(ctx.get(), v1::ExportAuditLogRequest());
  v1::AuditBundle chunk;
  std::string party;
  uint64_t entries = 0, heads = 0;
  absl::Status written;
  while (reader->Read(&chunk)) {
    if (!chunk.party().empty()) party = chunk.party();
    entries += chunk.entries_size();
    heads += chunk.tree_heads_size();
    written = (*bundle_file)->Write(chunk.SerializeAsString());
    std::string jsonl;
    for (const std::string& bytes : chunk.entries()) {
      v1::AuditEntry e;
      e.ParseFromString(bytes);
      absl::StrAppend(&jsonl, EntryJson(e), "\n");
    }
    if (written.ok()) written = (*jsonl_file)->Write(jsonl);
    if (!written.ok()) {
      ctx->TryCancel();
      break;
    }
  }
  grpc::Status st = reader->Finish();
  if (!written.ok()) return Fail(kExitFailure, written.message());
  if (!st.ok()) return Rpc(st);
  absl::Status w1 = (*jsonl_file)->Commit();
  absl::Status w2 = (*bundle_file)->Commit();
  if (!w1.ok() || !w2.ok()) return Fail(kExitFailure, (!w1.ok() ? w1 : w2).message());
  BundleInfo info;
  auto verified = comity::VerifyBundleFile(prefix + ".bundle", &info);
  if (!verified.ok()) return Fail(kExitFailure, verified.status().message());
  const VerifyReport& report = *verified;
  if (json_) {
    out_ << JsonValue::Object()
                .Set("party", party)
                .Set("entries", entries)
                .Set("tree_heads", heads)
                .Set("jsonl", prefix + ".jsonl")
                .Set("bundle", prefix + ".bundle")
                .Set("verified", report.ok)
                .Set("root", HexEncode(report.root))
                .Set("summary", report.Summary())
                .Dump()
         << "\n";
    return report.ok ? kExitOk : kExitFailure;
  }
  out_ << "exported " << entries << " entries and " << heads
       << " signed tree heads of " << party << "'s log to " << prefix << ".jsonl and "
       << prefix << ".bundle\n"
       << "check offline: comity audit verify --bundle " << prefix << ".bundle\n"
       << report.Summary() << "\n";
  return report.ok ? kExitOk : kExitFailure;
}

int AuditCli::Stats(const ParsedArgs&) {
  // The whole log, a page at a time.
  AuditLogStatsBuilder builder;
  grpc::Status st =
      ReadAuditEntries(*stub_, v1::GetAuditEntriesRequest(), 0, absl::Seconds(60),
                       [&](std::string entry) { builder.Add(entry); });
  if (!st.ok()) return Rpc(st);
  const AuditLogStats stats = builder.Finish();
  auto counts = [](const std::map<std::string, int>& m) {
    JsonValue o = JsonValue::Object();
    for (const auto& [k, v] : m) o.Set(k, v);
    return o;
  };
  auto nested = [&counts](const std::map<std::string, std::map<std::string, int>>& m) {
    JsonValue o = JsonValue::Object();
    for (const auto& [k, inner] : m) o.Set(k, counts(inner));
    return o;
  };
  auto times = [](const std::vector<double>& ms) {
    return JsonValue::Object()
        .Set("count", ms.size())
        .Set("p50", AuditLogStats::Percentile(ms, 0.5))
        .Set("p90", AuditLogStats::Percentile(ms, 0.9));
  };
  if (json_) {
    out_ << JsonValue::Object()
                .Set("entries", stats.entries)
                .Set("sent_by_partner", counts(stats.sent_by_partner))
                .Set("received_by_partner", counts(stats.received_by_partner))
                .Set("assessments_by_instrument", counts(stats.assessments_by_instrument))
                .Set("assessments_by_obligation", counts(stats.assessments_by_obligation))
                .Set("refusals_by_reason", counts(stats.refusals_by_reason))
                .Set("case_refusals_by_ground", counts(stats.case_refusals_by_ground))
                .Set("outcomes_by_partner", nested(stats.outcomes_by_partner))
                .Set("outcomes_by_instrument", nested(stats.outcomes_by_instrument))
                .Set("deadlines_missed", counts(stats.deadlines_missed))
                .Set("acknowledgement_ms", times(stats.acknowledgement_ms))
                .Set("decision_ms", times(stats.decision_ms))
                .Set("response_ms", times(stats.response_ms))
                .Dump()
         << "\n";
    return kExitOk;
  }
  auto table = [&](const std::string& title, const std::map<std::string, int>& m) {
    out_ << title << ":";
    if (m.empty()) out_ << " none";
    for (const auto& [k, v] : m) out_ << "  " << k << " " << v;
    out_ << "\n";
  };
  auto line = [&](const char* title, const std::vector<double>& ms, const char* what) {
    char buf[200];
    std::snprintf(buf, sizeof(buf), "%s: %zu %s, p50 %.1f ms, p90 %.1f ms\n", title, ms.size(),
                  what, AuditLogStats::Percentile(ms, 0.5), AuditLogStats::Percentile(ms, 0.9));
    out_ << buf;
  };
  out_ << "computed from " << stats.entries << " log entries\n";
  table("requests sent, by partner", stats.sent_by_partner);
  table("requests received, by partner", stats.received_by_partner);
  table("assessments, by instrument", stats.assessments_by_instrument);
  table("assessments, by obligation", stats.assessments_by_obligation);
  table("case refusals, by ground", stats.case_refusals_by_ground);
  if (stats.outcomes_by_partner.empty()) table("case steps, by partner", {});
  for (const auto& [partner, m] : stats.outcomes_by_partner) {
    table("case steps, partner " + partner, m);
  }
  for (const auto& [instrument, m] : stats.outcomes_by_instrument) {
    table("case steps, instrument " + instrument, m);
  }
  table("deadlines missed, by kind", stats.deadlines_missed);
  table("deliveries refused, by reason", stats.refusals_by_reason);
  line("time to decide (from the request to ACCEPT or REFUSE)", stats.decision_ms, "decided");
  line("time to respond (from the request to the first RESPOND)", stats.response_ms,
       "responded");
  line("delivery acknowledgement (transport)", stats.acknowledgement_ms, "acknowledged");
  return kExitOk;
}

int AuditCli::Head(const ParsedArgs&) {
  auto ctx = Context();
  v1::SignTreeHeadResponse resp;
  grpc::Status st = stub_->SignTreeHead(ctx.get(), v1::SignTreeHeadRequest(), &resp);
  if (!st.ok()) return Rpc(st);
  v1::TreeHead h;
  h.ParseFromString(resp.head().payload());
  if (json_) {
    out_ << JsonValue::Object()
                .Set("party", h.party())
                .Set("tree_size", h.tree_size())
                .Set("root", HexEncode(h.root_hash()))
                .Set("signer_party", resp.head().signer_party())
                .Set("key_id", resp.head().key_id())
                .Set("time", absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ",
                                              absl::FromUnixMicros(h.timestamp_unix_micros()),
                                              absl::UTCTimeZone()))
                .Dump()
         << "\n";
    return kExitOk;
  }
  out_ << "signed tree head of " << h.party() << ": size " << h.tree_size() << ", root "
       << HexEncode(h.root_hash()) << ", key " << resp.head().key_id() << "\n";
  return kExitOk;
}

}  // namespace

int RunAuditCli(const std::vector<std::string>& args, const GetEnv& env, std::ostream& out,
                std::ostream& err) {
  AuditCli cli(env, out, err);
  return cli.Run(args);
}

}  // namespace comity
