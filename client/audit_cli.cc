#include "client/audit_cli.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/time/time.h"
#include "client/args.h"
#include "client/audit_page.h"
#include "client/connection.h"
#include "client/list_pages.h"
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
#include "server/util/hex.h"

namespace comity {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;

std::string EntryJson(const v1::AuditEntry& e) {
  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = true;
  std::string json;
  v1::AuditEntry copy = e;
  copy.clear_hashes();
  (void)google::protobuf::util::MessageToJsonString(copy, &json, opts);
  Struct s;
  (void)google::protobuf::util::JsonStringToMessage(json, &s);
  auto& f = *s.mutable_fields();
  f["index"].set_number_value(static_cast<double>(e.index()));
  f["time"].set_string_value(absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ",
                                              absl::FromUnixMicros(e.time_unix_micros()),
                                              absl::UTCTimeZone()));
  f.erase("time_unix_micros");
  Value hashes;
  for (const auto& h : e.hashes()) {
    hashes.mutable_list_value()->add_values()->set_string_value(HexEncode(h));
  }
  if (e.hashes_size() > 0) f["hashes"] = hashes;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(s, &out);
  return out;
}

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

class AuditCli {
 public:
  AuditCli(const GetEnv& env, std::ostream& out, std::ostream& err)
      : env_(env), out_(out), err_(err) {}
  int Run(const std::vector<std::string>& args);

 private:
  int Fail(int code, absl::string_view message) {
    err_ << "comity: " << message << "\n";
    return code;
  }
  int Rpc(const grpc::Status& status) {
    return Fail(kExitFailure, DescribeRpcError(address_, status));
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
  } else if (command.empty() || command == "help") {
    out_ << UsageText("audit");
    return command.empty() ? kExitUsage : kExitOk;
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
    return Fail(absl::IsInvalidArgument(connection.status()) ? kExitUsage : kExitFailure,
                connection.status().message());
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
    out_ << "{\"ok\":" << (resp.ok() ? "true" : "false") << ",\"entries\":" << resp.entries()
         << ",\"root\":\"" << HexEncode(resp.root()) << "\",\"heads\":" << resp.heads()
         << ",\"error\":" << "\"" << absl::StrReplaceAll(resp.error(), {{"\"", "'"}}) << "\"}\n";
  } else {
    out_ << resp.summary() << "\n";
  }
  return resp.ok() ? kExitOk : kExitFailure;
}

int AuditCli::VerifyBundleFile(const std::string& path) {
  auto bytes = ReadFile(path);
  if (!bytes.ok()) return Fail(kExitUsage, bytes.status().message());
  v1::AuditBundle bundle;
  if (!bundle.ParseFromString(*bytes)) {
    return Fail(kExitFailure, absl::StrCat(path, " is not an audit bundle (comity audit export)"));
  }
  VerifyReport report = VerifyBundle(bundle);
  std::vector<std::string> keys;
  for (const auto& k : bundle.public_keys()) {
    keys.push_back(absl::StrCat(k.party(), " ", k.key_id(), " ",
                                KeyFingerprint(k.ed25519_public_key())));
  }
  if (json_) {
    out_ << "{\"ok\":" << (report.ok ? "true" : "false") << ",\"party\":\"" << bundle.party()
         << "\",\"entries\":" << report.entries << ",\"root\":\"" << HexEncode(report.root)
         << "\",\"heads\":" << report.heads << "}\n";
  } else {
    out_ << "bundle of " << bundle.party() << "'s log, checked offline with its keys ("
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
  if (!st.ok()) return absl::UnavailableError(DescribeRpcError(address_, st));
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
  if (!heads.ok()) return Fail(kExitFailure, heads.message());
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
    std::vector<std::string> hex;
    for (const auto& h : proof) hex.push_back("\"" + HexEncode(h) + "\"");
    out_ << "{\"index\":" << index << ",\"tree_size\":" << head->tree_size() << ",\"root\":\""
         << HexEncode(head->root_hash()) << "\",\"leaf_hash\":\""
         << HexEncode(merkle::LeafHash(resp.entry())) << "\",\"proof\":["
         << absl::StrJoin(hex, ",") << "],\"verified\":" << (ok.ok() ? "true" : "false")
         << ",\"entry\":" << EntryJson(e) << "}\n";
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
    std::vector<std::string> hex;
    for (const auto& h : proof) hex.push_back("\"" + HexEncode(h) + "\"");
    out_ << "{\"old_size\":" << old_size << ",\"new_size\":" << new_size << ",\"old_root\":\""
         << HexEncode(resp.old_root()) << "\",\"new_root\":\"" << HexEncode(resp.root())
         << "\",\"proof\":[" << absl::StrJoin(hex, ",") << "],\"verified\":"
         << (ok.ok() ? "true" : "false") << "}\n";
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
  auto ctx = Context(600);
  auto reader = stub_->Export(ctx.get(), v1::ExportAuditLogRequest());
  v1::AuditBundle bundle, chunk;
  while (reader->Read(&chunk)) bundle.MergeFrom(chunk);
  grpc::Status st = reader->Finish();
  if (!st.ok()) return Rpc(st);
  const std::string prefix = a.Get("out");
  std::string jsonl;
  for (const std::string& bytes : bundle.entries()) {
    v1::AuditEntry e;
    e.ParseFromString(bytes);
    absl::StrAppend(&jsonl, EntryJson(e), "\n");
  }
  absl::Status w1 = WriteFileAtomically(prefix + ".jsonl", jsonl, 0600);
  absl::Status w2 = WriteFileAtomically(prefix + ".bundle", bundle.SerializeAsString(), 0600);
  if (!w1.ok() || !w2.ok()) return Fail(kExitFailure, (!w1.ok() ? w1 : w2).message());
  VerifyReport report = VerifyBundle(bundle);
  out_ << "exported " << bundle.entries_size() << " entries and " << bundle.tree_heads_size()
       << " signed tree heads of " << bundle.party() << "'s log to " << prefix << ".jsonl and "
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
  const auto& sent = stats.sent_by_partner;
  const auto& received = stats.received_by_partner;
  const auto& by_instrument = stats.assessments_by_instrument;
  const auto& by_obligation = stats.assessments_by_obligation;
  const auto& refused = stats.refusals_by_reason;
  const auto& ack_ms = stats.acknowledgement_ms;
  auto pct = [&stats](double p) { return stats.AcknowledgementPercentile(p); };
  auto obj = [](const std::map<std::string, int>& m) {
    std::vector<std::string> items;
    for (const auto& [k, v] : m) items.push_back(absl::StrCat("\"", k, "\":", v));
    return absl::StrCat("{", absl::StrJoin(items, ","), "}");
  };
  if (json_) {
    out_ << "{\"entries\":" << stats.entries << ",\"sent_by_partner\":" << obj(sent)
         << ",\"received_by_partner\":" << obj(received)
         << ",\"assessments_by_instrument\":" << obj(by_instrument)
         << ",\"assessments_by_obligation\":" << obj(by_obligation)
         << ",\"refusals_by_reason\":" << obj(refused)
         << ",\"acknowledgement_ms\":{\"count\":" << ack_ms.size()
         << ",\"p50\":" << pct(0.5) << ",\"p90\":" << pct(0.9) << "}}\n";
    return kExitOk;
  }
  auto table = [&](const char* title, const std::map<std::string, int>& m) {
    out_ << title << ":";
    if (m.empty()) out_ << " none";
    for (const auto& [k, v] : m) out_ << "  " << k << " " << v;
    out_ << "\n";
  };
  out_ << "computed from " << stats.entries << " log entries\n";
  table("requests sent, by partner", sent);
  table("requests received, by partner", received);
  table("assessments, by instrument", by_instrument);
  table("assessments, by obligation", by_obligation);
  table("refusals, by reason", refused);
  char line[160];
  std::snprintf(line, sizeof(line),
                "acknowledgement time: %zu acknowledged, p50 %.1f ms, p90 %.1f ms\n",
                ack_ms.size(), pct(0.5), pct(0.9));
  out_ << line;
  return kExitOk;
}

int AuditCli::Head(const ParsedArgs&) {
  auto ctx = Context();
  v1::SignTreeHeadResponse resp;
  grpc::Status st = stub_->SignTreeHead(ctx.get(), v1::SignTreeHeadRequest(), &resp);
  if (!st.ok()) return Rpc(st);
  v1::TreeHead h;
  h.ParseFromString(resp.head().payload());
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
