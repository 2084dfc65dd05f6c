#include "client/cli.h"

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "client/admin_cli.h"
#include "client/args.h"
#include "client/audit_cli.h"
#include "client/case_cli.h"
#include "client/case_view.h"
#include "client/connection.h"
#include "client/custody_cli.h"
#include "client/health_cli.h"
#include "client/keys_cli.h"
#include "client/list_pages.h"
#include "client/record_output.h"
#include "client/treaty_cli.h"
#include "client/worklist.h"
#include "client/usage.h"
#include "comity/v1/operator.grpc.pb.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/json_util.h"
#include "server/config/node_config.h"
#include "server/core/case_rules.h"
#include "server/core/envelope.h"
#include "server/core/parties.h"
#include "server/crypto/ed25519.h"
#include "server/crypto/verified_file.h"
#include "server/util/files.h"
#include "server/util/status_macros.h"
#include "server/util/text_proto.h"

namespace comity {
namespace {

// `comity list` without --limit: the newest this many.
constexpr uint32_t kDefaultListLimit = 100;

class Cli {
 public:
  Cli(const GetEnv& env, std::ostream& out, std::ostream& err)
      : env_(env), out_(out), err_(err) {}
  int Run(const std::vector<std::string>& args);

 private:
  int Fail(const CliError& e) { return ReportError(err_, json_, "comity", e); }
  absl::Status Connect(const ParsedArgs& args);
  int Submit(const ParsedArgs& args);
  int List(const ParsedArgs& args);
  int Approve(const ParsedArgs& args);
  int Peers(const ParsedArgs& args);
  int Export(const ParsedArgs& args);
  // Prints a record returned by SubmitRequest or ApproveRequest.
  int PrintSubmitted(const v1::RequestRecord& r,
                     const google::protobuf::RepeatedPtrField<v1::PublicKey>& keys);
  int Show(const ParsedArgs& args);
  void PrintJson(const JsonValue& value);
  CliError RpcError(const grpc::Status& status) const;

  const GetEnv& env_;
  std::ostream& out_;
  std::ostream& err_;
  bool json_ = false;
  std::string address_;
  std::unique_ptr<v1::OperatorService::Stub> stub_;
};

// --- Small helpers. ---
absl::StatusOr<v1::RequestBody> DraftFromFlags(const ParsedArgs& a) {
  v1::RequestBody d;
  for (const char* required : {"to", "type", "offence", "authority", "facts"}) {
    if (!a.Has(required)) {
      return absl::InvalidArgumentError(
          absl::StrCat("submit needs --", required, " (or --file DRAFT); see 'comity help'"));
    }
  }
  d.set_requested_party(absl::AsciiStrToUpper(a.Get("to")));
  COMITY_ASSIGN_OR_RETURN(auto type, ParseEnum<v1::AssistanceType>(
                                         v1::AssistanceType_descriptor(), "type", a.Get("type")));
  d.set_assistance_type(type);
  COMITY_ASSIGN_OR_RETURN(auto offence,
                          ParseEnum<v1::OffenceCategory>(v1::OffenceCategory_descriptor(),
                                                         "offence", a.Get("offence")));
  d.mutable_offence()->set_category(offence);
  d.mutable_offence()->set_description(a.Get("offence-description"));
  if (a.Has("penalty-months")) {
    uint32_t months = 0;
    if (!absl::SimpleAtoi(a.Get("penalty-months"), &months)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--penalty-months '", a.Get("penalty-months"), "' is not a whole number of months"));
    }
    d.mutable_offence()->set_max_penalty_months(months);
  }
  if (a.Has("urgency")) {
    COMITY_ASSIGN_OR_RETURN(auto u, ParseEnum<v1::Urgency>(v1::Urgency_descriptor(),
                                                           "urgency", a.Get("urgency")));
    d.set_urgency(u);
  }
  v1::Particulars* p = d.mutable_particulars();
  p->set_requesting_authority(a.Get("authority"));
  p->set_facts_summary(a.Get("facts"));
  p->set_data_sought(a.Get("data-sought"));
  p->set_relation_to_offence(a.Get("relation"));
  p->set_custodian_or_location(a.Get("custodian"));
  p->set_necessity(a.Get("necessity"));
  p->set_intends_mutual_assistance_request(a.switches.count("intent-mla") != 0);
  v1::HandlingConditions* h = d.mutable_handling();
  h->set_confidential(a.switches.count("confidential") != 0);
  for (const std::string& limit : a.GetAll("use-limit")) h->add_use_limits(limit);
  if (a.Has("tlp")) {
    COMITY_ASSIGN_OR_RETURN(auto tlp,
                            ParseEnum<v1::Tlp>(v1::Tlp_descriptor(), "tlp", a.Get("tlp"), "TLP_"));
    h->set_tlp(tlp);
  }
  for (const std::string& id : a.GetAll("related")) d.add_related_request_ids(id);
  return d;
}

// --- Commands. ---

int Cli::Run(const std::vector<std::string>& args) {
  if (std::optional<int> code = HandleHelpOrVersion(args, out_)) return *code;
  json_ = WantsJson(args);  // Even a usage error is JSON then.
  if (args.empty()) {
    err_ << GlobalUsage();
    return kExitUsage;
  }
  FlagSpec spec;
  spec.with_value = {"connect"};
  spec.switches = {"json", "help"};
  const std::string command = FindCommand(args, {"connect"});
  if (command == "audit") {
    std::vector<std::string> rest = args;
    rest.erase(std::find(rest.begin(), rest.end(), std::string("audit")));
    return RunAuditCli(rest, env_, out_, err_);
  }
  if (command == "treaty") {
    std::vector<std::string> rest = args;
    rest.erase(std::find(rest.begin(), rest.end(), std::string("treaty")));
    return RunTreatyCli(rest, env_, out_, err_);
  }
  if (command == "admin") {
    std::vector<std::string> rest = args;
    rest.erase(std::find(rest.begin(), rest.end(), std::string("admin")));
    return RunAdminCli(rest, env_, out_, err_);
  }
  if (command == "keys") {
    std::vector<std::string> rest = args;
    rest.erase(std::find(rest.begin(), rest.end(), std::string("keys")));
    return RunKeysCli(rest, env_, out_, err_);
  }
  if (command == "verify-package") {
    std::vector<std::string> rest = args;
    rest.erase(std::find(rest.begin(), rest.end(), std::string("verify-package")));
    return RunVerifyPackageCli(rest, out_, err_);
  }
  if (command == "health") {
    std::vector<std::string> rest = args;
    rest.erase(std::find(rest.begin(), rest.end(), std::string("health")));
    return RunHealthCli(rest, env_, out_, err_);
  }
  if (command == "submit") {
    spec.with_value.insert({"to", "type", "offence", "offence-description", "penalty-months",
                            "urgency", "authority", "facts", "data-sought", "relation",
                            "custodian", "necessity", "tlp", "use-limit", "related", "file"});
    spec.repeated = {"use-limit", "related"};
    spec.switches.insert({"intent-mla", "confidential"});
  } else if (command == "list") {
    spec.with_value.insert("limit");
    spec.switches.insert({"sent", "received"});
  } else if (CaseActionForCommand(command) != v1::CASE_ACTION_UNSPECIFIED) {
    spec.with_value.insert(
        {"ground", "reasons", "consultation", "text", "file", "import", "condition"});
    spec.repeated = {"ground", "file", "import", "condition"};
    spec.switches.insert("final");
  } else if (command == "show") {
    spec.switches.insert("chain");
  } else if (command == "export") {
    spec.with_value.insert("out");
    spec.switches.insert("allow-tlp-red");
  } else if (command == "peers" || command == "fetch") {
  } else if (command == "overdue") {
  } else if (command == "show" || command == "approve" || command == "inbox" ||
             command == "help" || command.empty()) {
  } else {
    return Fail({kExitUsage, absl::StrCat("unknown command '", command,
                                          "'; commands: ", TopLevelCommandList())});
  }
  absl::StatusOr<ParsedArgs> parsed = ParseArgs(args, spec);
  if (!parsed.ok()) {
    // The flag that was wrong, then the command's own usage (text only:
    // under --json the hint names the help to read).
    const std::string name = command.empty() ? "comity" : command;
    int code = Fail({kExitUsage, absl::StrCat(parsed.status().message(), " (for ", name, ")"),
                     absl::StrCat("comity ", command.empty() ? "" : command + " ", "--help")});
    if (!json_ && FindUsage(command) != nullptr) err_ << "\n" << UsageText(command);
    return code;
  }
  if (command == "help" || command.empty() || parsed->switches.count("help")) {
    out_ << GlobalUsage();
    return kExitOk;
  }
  json_ = parsed->switches.count("json") != 0;
  // The first positional is the command.
  parsed->positional.erase(parsed->positional.begin());
  if (command == "show" || command == "approve" || command == "export" || command == "fetch" ||
      CaseActionForCommand(command) != v1::CASE_ACTION_UNSPECIFIED) {
    if (parsed->positional.size() != 1) {
      return Fail({kExitUsage, absl::StrCat(command, " takes exactly one request id: comity ",
                                            command, " ID")});
    }
  } else if (!parsed->positional.empty()) {
    return Fail({kExitUsage, absl::StrCat("unexpected argument '", parsed->positional[0],
                                          "' for ", command)});
  }
  if (absl::Status st = Connect(*parsed); !st.ok()) {
    // No file, or one that does not load: the command line (or
    // $COMITY_CONNECT) is wrong, not the node.
    return Fail({kExitUsage, std::string(st.message()),
                 "--connect names a comity.v1.ClientConfig (docs/configuration.md)"});
  }
  // An id prefix names the one request it starts (issue 15): resolved here,
  // once, for every command that takes an id.
  if (parsed->positional.size() == 1 && !IsCanonicalUuid(parsed->positional[0])) {
    std::vector<v1::RequestRecord> records;
    grpc::Status listed = ListRequestPages(*stub_, v1::DIRECTION_UNSPECIFIED, 0,
                                           absl::Seconds(15), &records);
    if (!listed.ok()) return Fail(RpcError(listed));
    auto id = MatchIdPrefix(records, parsed->positional[0]);
    if (!id.ok()) {
      return Fail({absl::IsInvalidArgument(id.status()) ? kExitUsage : kExitFailure,
                   std::string(id.status().message())});
    }
    parsed->positional[0] = *id;
  }
  if (command == "submit") return Submit(*parsed);
  if (command == "approve") return Approve(*parsed);
  if (CaseActionForCommand(command) != v1::CASE_ACTION_UNSPECIFIED) {
    return RunCaseAction(*stub_, address_, *parsed, CaseActionForCommand(command), json_,
                         out_, err_);
  }
  if (command == "inbox") return RunInbox(*stub_, address_, json_, out_, err_);
  if (command == "overdue") return RunOverdue(*stub_, address_, json_, out_, err_);
  if (command == "peers") return Peers(*parsed);
  if (command == "fetch") {
    return RunFetchEvidence(*stub_, address_, *parsed, json_, out_, err_);
  }
  if (command == "export") return Export(*parsed);
  if (command == "list") return List(*parsed);
  return Show(*parsed);
}

absl::Status Cli::Connect(const ParsedArgs& args) {
  COMITY_ASSIGN_OR_RETURN(NodeConnection c, ConnectToNode(args, env_));
  address_ = c.address;
  stub_ = v1::OperatorService::NewStub(c.channel);
  return absl::OkStatus();
}

CliError Cli::RpcError(const grpc::Status& status) const {
  return RpcCliError(address_, status);
}

void Cli::PrintJson(const JsonValue& value) { out_ << value.Dump() << "\n"; }

int Cli::Submit(const ParsedArgs& args) {
  v1::RequestBody draft;
  if (args.Has("file")) {
    for (const char* f : {"to", "type", "offence", "authority", "facts"}) {
      if (args.Has(f)) {
        return Fail({kExitUsage, absl::StrCat("--file and --", f,
                                              " cannot be combined; put it in the file")});
      }
    }
    auto text = ReadFile(args.Get("file"));
    if (!text.ok()) return Fail({kExitUsage, std::string(text.status().message())});
    absl::Status st = ParseTextProto(*text, args.Get("file"), &draft);
    if (!st.ok()) return Fail({kExitUsage, std::string(st.message())});
  } else {
    auto d = DraftFromFlags(args);
    if (!d.ok()) return Fail({kExitUsage, std::string(d.status().message())});
    draft = *std::move(d);
  }
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
  v1::SubmitRequestRequest req;
  *req.mutable_draft() = draft;
  v1::SubmitRequestResponse resp;
  grpc::Status status = stub_->SubmitRequest(&ctx, req, &resp);
  if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return Fail({kExitUnreachable,
                 "the node did not answer within 60 s; it may have stored the request and "
                 "be delivering it",
                 "check 'comity list --sent' before submitting again"});
  }
  if (!status.ok()) return Fail(RpcError(status));
  return PrintSubmitted(resp.record(), resp.signer_keys());
}

int Cli::PrintSubmitted(const v1::RequestRecord& r,
                        const google::protobuf::RepeatedPtrField<v1::PublicKey>& keys) {
  v1::RequestBody body;
  body.ParseFromString(r.request().payload());
  RecordVerification v = VerifyRecord(r, body, keys);
  const bool awaiting = r.state() == v1::AWAITING_APPROVAL;
  bool good = awaiting || (v.signature.ok() && (!v.has_receipt || v.receipt.ok()));
  if (json_) {
    JsonValue s = RecordSummaryJson(r, body);
    if (!awaiting) s.Set("verification", VerificationJson(r, v));
    PrintJson(s);
  } else {
    out_ << "submitted " << body.id() << ": " << body.requesting_party() << " -> "
         << body.requested_party() << ", " << v1::AssistanceType_Name(body.assistance_type())
         << ", " << v1::OffenceCategory_Name(body.offence().category()) << "\n";
    out_ << "delivery:  " << v1::RequestState_Name(r.state());
    if (r.state() == v1::PENDING_DELIVERY) {
      out_ << " (stored; the node keeps retrying until " << body.requested_party()
           << " acknowledges)";
    } else if (awaiting) {
      out_ << " (not sent: a second operator with the approver role must run: comity approve "
           << body.id() << ")";
    }
    out_ << "\n";
    if (!r.approved_by().empty()) {
      out_ << "approved:  by " << r.approved_by() << " (submitted by " << r.submitted_by()
           << ")\n";
    }
    if (!awaiting) PrintVerification(out_, r, v, body.requested_party());
    PrintAssessments(out_, body, v);
  }
  if (!good) {
    err_ << "comity: verification failed; do not rely on this receipt\n";
    return kExitFailure;
  }
  return kExitOk;
}

int Cli::Approve(const ParsedArgs& args) {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
  v1::ApproveRequestRequest req;
  req.set_id(args.positional[0]);
  v1::ApproveRequestResponse resp;
  grpc::Status status = stub_->ApproveRequest(&ctx, req, &resp);
  if (!status.ok()) return Fail(RpcError(status));
  return PrintSubmitted(resp.record(), resp.signer_keys());
}

int Cli::Export(const ParsedArgs& args) {
  if (!args.Has("out")) return Fail({kExitUsage, "export needs --out DIR"});
  ExportOptions options;
  options.request_id = args.positional[0];
  options.dir = args.Get("out");
  options.allow_tlp_red = args.switches.count("allow-tlp-red") != 0;
  options.json = json_;
  return ExportCustodyPackage(*stub_, address_, options, out_, err_);
}

int Cli::Peers(const ParsedArgs&) {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(15)));
  v1::ListPeersResponse resp;
  grpc::Status status = stub_->ListPeers(&ctx, v1::ListPeersRequest(), &resp);
  if (!status.ok()) return Fail(RpcError(status));
  auto when = [](int64_t us) {
    return us == 0 ? std::string("never")
                   : absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixMicros(us),
                                      absl::UTCTimeZone());
  };
  JsonValue list = JsonValue::Array();
  for (const v1::PeerStatus& p : resp.peers()) {
    if (json_) {
      JsonValue f = JsonValue::Object();
      f.Set("party", p.party());
      f.Set("address", p.address());
      f.Set("reachable", p.reachable());
      f.Set("last_contact", when(p.last_contact_unix_micros()));
      f.Set("requests_queued", p.requests_queued());
      f.Set("transitions_queued", p.transitions_queued());
      f.Set("consecutive_failures", p.consecutive_failures());
      f.Set("evidence_pending", p.evidence_pending());
      f.Set("evidence_given_up", p.evidence_given_up());
      if (p.next_attempt_unix_micros() != 0) {
        f.Set("next_attempt", when(p.next_attempt_unix_micros()));
      }
      if (!p.last_error().empty()) f.Set("last_error", p.last_error());
      list.Add(std::move(f));
      continue;
    }
    const bool tried = p.last_attempt_unix_micros() != 0;
    out_ << p.party() << "  " << p.address() << "  "
         << (!tried ? "not contacted yet" : p.reachable() ? "reachable" : "UNREACHABLE")
         << "  queued: " << p.requests_queued() << " requests, " << p.transitions_queued()
         << " case steps  last contact: " << when(p.last_contact_unix_micros());
    if (!p.last_error().empty()) {
      // The error stays after the peer answers again: say which it is.
      out_ << "\n    " << (p.reachable() ? "last error, before the last contact: " : "last error: ")
           << p.last_error();
    }
    if (p.next_attempt_unix_micros() != 0) {
      out_ << "\n    backing off after " << p.consecutive_failures()
           << " failed attempts; next try " << when(p.next_attempt_unix_micros());
    }
    if (p.evidence_pending() > 0) {
      out_ << "\n    evidence to fetch: " << p.evidence_pending() << " files";
      if (p.evidence_given_up() > 0) {
        out_ << ", " << p.evidence_given_up()
             << " given up after too many attempts (comity show ID, comity fetch ID)";
      }
    }
    out_ << "\n";
  }
  if (json_) PrintJson(list);
  return kExitOk;
}

int Cli::List(const ParsedArgs& args) {
  v1::Direction direction = v1::DIRECTION_UNSPECIFIED;
  if (args.switches.count("sent") && args.switches.count("received")) {
    return Fail({kExitUsage, "--sent and --received exclude each other; give neither for both"});
  }
  if (args.switches.count("sent")) direction = v1::OUTGOING;
  if (args.switches.count("received")) direction = v1::INCOMING;
  uint32_t limit = kDefaultListLimit;
  if (args.Has("limit")) {
    if (!absl::SimpleAtoi(args.Get("limit"), &limit) || limit == 0) {
      return Fail({kExitUsage, absl::StrCat("--limit '", args.Get("limit"),
                                            "' is not a positive whole number")});
    }
  }
  std::vector<v1::RequestRecord> records;
  grpc::Status status =
      ListRequestPages(*stub_, direction, limit, absl::Seconds(15), &records);
  if (!status.ok()) return Fail(RpcError(status));
  v1::ListRequestsResponse resp;
  for (v1::RequestRecord& r : records) *resp.add_records() = std::move(r);
  JsonValue list = JsonValue::Array();
  if (!json_) {
    out_ << "ID                                    DIR       FROM TO  TYPE                     CASE (or delivery)\n";
  }
  for (const v1::RequestRecord& r : resp.records()) {
    v1::RequestBody body;
    body.ParseFromString(r.request().payload());
    if (json_) {
      list.Add(RecordSummaryJson(r, body));
      continue;
    }
    char line[256];
    std::snprintf(line, sizeof(line), "%-37s %-9s %-4s %-3s %-24s %s", body.id().c_str(),
                  DirectionName(r.direction()).c_str(), body.requesting_party().c_str(),
                  body.requested_party().c_str(),
                  v1::AssistanceType_Name(body.assistance_type()).c_str(),
                  r.case_state() != v1::CASE_STATE_UNSPECIFIED
                      ? v1::CaseState_Name(r.case_state()).c_str()
                      : ("delivery " + v1::RequestState_Name(r.state())).c_str());
    out_ << line << "\n";
  }
  if (json_) {
    PrintJson(list);
  } else if (resp.records().empty()) {
    out_ << "(no requests)\n";
  }
  return kExitOk;
}

int Cli::Show(const ParsedArgs& args) {
  v1::GetRequestRequest req;
  req.set_id(args.positional[0]);
  req.set_chain(args.switches.count("chain") != 0);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(15)));
  v1::GetRequestResponse resp;
  grpc::Status status = stub_->GetRequest(&ctx, req, &resp);
  if (!status.ok()) return Fail(RpcError(status));
  bool good = true;
  JsonValue list = JsonValue::Array();
  KeyRing ring;
  FillRing(resp.signer_keys(), &ring);
  if (req.chain() && !json_) {
    out_ << "chain of " << resp.records_size() << " request record(s), oldest first:\n";
    int n = 0;
    for (const v1::RequestRecord& r : resp.records()) {
      v1::RequestBody body;
      body.ParseFromString(r.request().payload());
      out_ << "  " << ++n << ". " << FormatTimestamp(body.created_at()) << "  "
           << v1::AssistanceType_Name(body.assistance_type()) << "  "
           << body.requesting_party() << " -> " << body.requested_party() << "  "
           << (r.case_state() ? v1::CaseState_Name(r.case_state())
                              : v1::RequestState_Name(r.state()))
           << "  " << body.id()
           << (body.related_request_ids().empty()
                   ? ""
                   : "  (follows " + absl::StrJoin(body.related_request_ids(), ", ") + ")")
           << "\n";
    }
    out_ << "\n";
  }
  for (const v1::RequestRecord& r : resp.records()) {
    v1::RequestBody body;
    if (!body.ParseFromString(r.request().payload())) {
      return Fail({kExitFailure, "the node returned a request payload that does not parse"});
    }
    if (req.chain() && !json_ && body.id() != req.id()) continue;  // Details of ID only.
    RecordVerification v = VerifyRecord(r, body, resp.signer_keys());
    good = good && (r.state() == v1::AWAITING_APPROVAL ||
                    (v.signature.ok() && (!v.has_receipt || v.receipt.ok())));
    const CaseView view =
        BuildCaseView(r, ring, resp.stored_evidence(), resp.pending_evidence());
    if (json_) {
      JsonValue s = RecordSummaryJson(r, body);
      s.Set("body", JsonValue::FromProto(body));
      s.Set("verification", VerificationJson(r, v));
      if (r.has_next_deadline()) s.Set("next_deadline", FormatTimestamp(r.next_deadline()));
      JsonValue deadlines = JsonValue::Array();
      for (const v1::CaseDeadline& d : resp.deadlines()) {
        if (d.request_id() == body.id() && d.direction() == r.direction()) {
          deadlines.Add(DeadlineJson(d, absl::Now()));
        }
      }
      s.Set("deadlines", std::move(deadlines));
      // Every signed step this node holds, verified (both parties must hold
      // the same), the conditions and the evidence.
      AddCaseJson(view, &s);
      list.Add(std::move(s));
      continue;
    }
    out_ << "request " << body.id() << " (" << DirectionName(r.direction()) << "; delivery "
         << v1::RequestState_Name(r.state());
    if (r.case_state() != v1::CASE_STATE_UNSPECIFIED) {
      out_ << "; case " << v1::CaseState_Name(r.case_state());
    }
    out_ << ")\n";
    out_ << "stored:    " << FormatTimestamp(r.stored_at());
    if (!r.submitted_by().empty()) out_ << " by " << r.submitted_by();
    out_ << "\n";
    std::string text;
    v1::RequestBody shown = body;
    shown.clear_requester_assessment();  // Printed below as "assessment XX:".
    google::protobuf::TextFormat::PrintToString(shown, &text);
    out_ << "body:\n";
    for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
      out_ << "  " << line << "\n";
    }
    PrintVerification(out_, r, v, body.requested_party());
    PrintAssessments(out_, body, v);
    PrintPendingConditions(out_, r, body, view);
    PrintCase(out_, r, view);
    for (const v1::CaseDeadline& d : resp.deadlines()) {
      if (d.request_id() == body.id() && d.direction() == r.direction()) {
        out_ << "deadline: " << DeadlineLine(d, absl::Now()) << "\n";
      }
    }
    PrintEvidence(out_, view);
  }
  // One request: one object; a chain (or a request held in both
  // directions): an array.
  if (json_) {
    if (!req.chain() && list.size() == 1) {
      PrintJson(list.At(0));
    } else {
      PrintJson(list);
    }
  }
  if (!good) {
    return Fail({kExitFailure, absl::StrCat("verification failed for request ", req.id()),
                 "do not rely on this record; compare the keys with 'comity keys'"});
  }
  return kExitOk;
}

}  // namespace

std::string WroteLine(const std::string& path, uint64_t bytes,
                      const std::string& sha256_hex) {
  return absl::StrCat("wrote ", path, " (", bytes, " bytes, sha256 ", sha256_hex, ")");
}

int RunCli(const std::vector<std::string>& args, const GetEnv& env, std::ostream& out,
           std::ostream& err) {
  Cli cli(env, out, err);
  return cli.Run(args);
}

}  // namespace comity
