#include "client/cli.h"

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <map>
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
#include "client/connection.h"
#include "client/evidence_upload.h"
#include "client/health_cli.h"
#include "client/keys_cli.h"
#include "client/list_pages.h"
#include "client/treaty_cli.h"
#include "client/usage.h"
#include "comity/v1/operator.grpc.pb.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"
#include "server/audit/receipt.h"
#include "server/config/node_config.h"
#include "server/core/case_rules.h"
#include "server/core/envelope.h"
#include "server/crypto/ed25519.h"
#include "server/crypto/verified_file.h"
#include "server/util/files.h"
#include "server/util/hex.h"
#include "server/util/status_macros.h"
#include "server/util/text_proto.h"

namespace comity {
namespace {

// `comity list` without --limit: the newest this many.
constexpr uint32_t kDefaultListLimit = 100;

using google::protobuf::Struct;
using google::protobuf::Value;
using google::protobuf::util::TimeUtil;

// An error that ends the command with an exit code.
struct CliError {
  int code;
  std::string message;
};

class Cli {
 public:
  Cli(const GetEnv& env, std::ostream& out, std::ostream& err)
      : env_(env), out_(out), err_(err) {}
  int Run(const std::vector<std::string>& args);

 private:
  int Fail(const CliError& e) {
    err_ << "comity: " << e.message << "\n";
    return e.code;
  }
  absl::Status Connect(const ParsedArgs& args);
  int Submit(const ParsedArgs& args);
  int List(const ParsedArgs& args);
  int Approve(const ParsedArgs& args);
  int Decide(const ParsedArgs& args, v1::CaseAction action);
  int Inbox(const ParsedArgs& args);
  int Overdue(const ParsedArgs& args);
  int Peers(const ParsedArgs& args);
  int Fetch(const ParsedArgs& args);
  int Export(const ParsedArgs& args);
  // Prints a record returned by SubmitRequest or ApproveRequest.
  int PrintSubmitted(const v1::RequestRecord& r,
                     const google::protobuf::RepeatedPtrField<v1::PublicKey>& keys);
  int Show(const ParsedArgs& args);
  void PrintJson(const Value& value);
  CliError RpcError(const grpc::Status& status) const;

  const GetEnv& env_;
  std::ostream& out_;
  std::ostream& err_;
  bool json_ = false;
  std::string address_;
  std::unique_ptr<v1::OperatorService::Stub> stub_;
};

// --- Small helpers. ---

// The case action a command names, or CASE_ACTION_UNSPECIFIED.
v1::CaseAction CaseActionFor(const std::string& command) {
  static const auto* actions = new std::map<std::string, v1::CaseAction>{
      {"ack", v1::ACKNOWLEDGE},     {"review", v1::START_REVIEW}, {"accept", v1::ACCEPT},
      {"refuse", v1::REFUSE},       {"postpone", v1::POSTPONE},   {"ask", v1::REQUEST_INFO},
      {"respond", v1::RESPOND},     {"close", v1::CLOSE},         {"withdraw", v1::WITHDRAW},
      {"answer", v1::PROVIDE_INFO}, {"accept-conditions", v1::ACCEPT_CONDITIONS}};
  auto it = actions->find(command);
  return it == actions->end() ? v1::CASE_ACTION_UNSPECIFIED : it->second;
}

Value Str(const std::string& s) {
  Value v;
  v.set_string_value(s);
  return v;
}
Value Num(double d) {
  Value v;
  v.set_number_value(d);
  return v;
}
Value Bool(bool b) {
  Value v;
  v.set_bool_value(b);
  return v;
}
Value Obj(Struct s) {
  Value v;
  *v.mutable_struct_value() = std::move(s);
  return v;
}

std::string FormatTs(const google::protobuf::Timestamp& ts) {
  return TimeUtil::ToString(ts);
}

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

// What a client can check of a record on its own.
struct Verification {
  absl::Status signature;
  bool has_receipt = false;
  absl::Status receipt;
  v1::Receipt parsed_receipt;
};

Verification Verify(const v1::RequestRecord& r, const v1::RequestBody& body,
                    const google::protobuf::RepeatedPtrField<v1::PublicKey>& keys) {
  KeyRing ring;
  for (const v1::PublicKey& k : keys) {
    ring.Add(k.party(), k.key_id(), k.ed25519_public_key()).IgnoreError();
  }
  Verification v;
  v.signature = VerifyEnvelope(r.request(), kRequestPayloadType, ring);
  v.has_receipt = r.has_receipt();
  if (v.has_receipt) {
    auto receipt = VerifyReceipt(r.request(), r.receipt(), body.requested_party(), ring);
    v.receipt = receipt.status();
    if (receipt.ok()) v.parsed_receipt = *std::move(receipt);
  }
  return v;
}

std::string DirectionName(v1::Direction d) {
  return d == v1::OUTGOING ? "sent" : d == v1::INCOMING ? "received" : "unknown";
}

std::string AssessmentLine(const v1::Assessment& a) {
  std::string grounds;
  for (int g : a.refusal_grounds()) {
    absl::StrAppend(&grounds, grounds.empty() ? "" : ",",
                    v1::RefusalGround_Name(static_cast<v1::RefusalGround>(g)));
  }
  return absl::StrCat(v1::Obligation_Name(a.obligation()),
                      a.instrument().empty() ? "" : " under " + a.instrument(),
                      a.basis().empty() ? "" : " (" + absl::StrJoin(a.basis(), "; ") + ")",
                      grounds.empty() ? "" : "; open grounds " + grounds,
                      a.deadline_days() ? absl::StrCat("; ", a.deadline_days(), " days") : "",
                      a.deadline_hours() ? absl::StrCat(" (", a.deadline_hours(), " hours if an emergency)") : "",
                      a.channel() != v1::CHANNEL_UNSPECIFIED
                          ? absl::StrCat("; send via ", v1::Channel_Name(a.channel()),
                                         a.channel_basis().empty() ? "" : " (" + a.channel_basis() + ")",
                                         a.authority().empty() ? "" : " to " + a.authority())
                          : "",
                      "; library ", a.library_version().substr(0, 12));
}

bool Agree(const v1::Assessment& a, const v1::Assessment& b) {
  return a.obligation() == b.obligation() && a.instrument() == b.instrument();
}

// The requester's assessment (in the signed body) and the receiver's (in
// the signed receipt), and whether they agree.
void PrintAssessments(std::ostream& out, const v1::RequestBody& body, const Verification& v) {
  if (body.has_requester_assessment()) {
    out << "assessment " << body.requesting_party() << ": "
        << AssessmentLine(body.requester_assessment()) << "\n";
  }
  if (v.has_receipt && v.receipt.ok() && v.parsed_receipt.has_receiver_assessment()) {
    const v1::Assessment& r = v.parsed_receipt.receiver_assessment();
    out << "assessment " << body.requested_party() << ": " << AssessmentLine(r) << "\n";
    if (body.has_requester_assessment() && !Agree(body.requester_assessment(), r)) {
      out << "DISAGREEMENT: " << body.requesting_party() << " and " << body.requested_party()
          << " assess this request differently; compare their treaty libraries and "
             "reasoning (comity show --json)\n";
    }
  }
}

// The case's state and its signed steps, each verified.
void PrintCase(std::ostream& out, const v1::RequestRecord& r,
               const google::protobuf::RepeatedPtrField<v1::PublicKey>& keys) {
  if (r.case_state() == v1::CASE_STATE_UNSPECIFIED) return;
  KeyRing ring;
  for (const v1::PublicKey& k : keys) {
    ring.Add(k.party(), k.key_id(), k.ed25519_public_key()).IgnoreError();
  }
  out << "case:      " << v1::CaseState_Name(r.case_state()) << "\n";
  for (const v1::SignedEnvelope& env : r.transitions()) {
    v1::Transition t;
    t.ParseFromString(env.payload());
    absl::Status ok = VerifyEnvelope(env, kTransitionPayloadType, ring);
    out << "  " << t.sequence() << ". " << v1::CaseAction_Name(t.action()) << " -> "
        << v1::CaseState_Name(t.to_state()) << " by " << t.party() << " ("
        << t.operator_name() << ") "
        << absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixMicros(t.time_unix_micros()),
                            absl::UTCTimeZone())
        << (ok.ok() ? ", signature verified" : ", signature FAILED: " + ok.ToString()) << "\n";
    std::vector<std::string> grounds;
    for (int g : t.refusal_grounds()) {
      grounds.push_back(v1::RefusalGround_Name(static_cast<v1::RefusalGround>(g)));
    }
    if (!grounds.empty()) out << "     grounds: " << absl::StrJoin(grounds, ", ") << "\n";
    if (!t.reasons().empty()) out << "     reasons: " << t.reasons() << "\n";
    if (!t.consultation().empty()) out << "     consultation: " << t.consultation() << "\n";
    if (!t.text().empty()) out << "     " << t.text() << "\n";
    for (const auto& d : t.open_duties()) out << "     open duty: " << d << "\n";
  }
  for (const v1::SignedEnvelope& env : r.queued_proposals()) {
    v1::TransitionProposal p;
    p.ParseFromString(env.payload());
    out << "  queued: " << v1::CaseAction_Name(p.action()) << " by " << p.operator_name()
        << ", signed, waiting for delivery to the requested party\n";
  }
}

// The evidence files of the case's responses, and which this node holds.
void PrintEvidence(std::ostream& out, const v1::RequestRecord& r,
                   const v1::GetRequestResponse& resp) {
  for (const v1::SignedEnvelope& env : r.transitions()) {
    v1::Transition t;
    if (!t.ParseFromString(env.payload())) continue;
    for (const v1::EvidenceFile& f : t.evidence()) {
      std::string where = r.direction() == v1::INCOMING
                              ? "released by this node"
                              : "not here yet (fetched and verified in the background)";
      for (const v1::StoredEvidence& s : resp.stored_evidence()) {
        if (s.sha256() == f.sha256() && r.direction() == v1::OUTGOING) {
          where = "verified, " + s.path();
        }
      }
      for (const v1::PendingEvidenceStatus& p : resp.pending_evidence()) {
        if (p.sha256() != f.sha256() || r.direction() != v1::OUTGOING) continue;
        if (p.gave_up()) {
          where = absl::StrCat("NOT FETCHED: ", p.last_error());
        } else if (p.attempts() > 0) {
          where = absl::StrCat(
              "not here yet: ", p.attempts(), " failed fetch attempts, last: ", p.last_error(),
              p.next_attempt_unix_micros() == 0
                  ? ""
                  : absl::StrCat("; next try ",
                                 absl::FormatTime("%Y-%m-%dT%H:%M:%SZ",
                                                  absl::FromUnixMicros(
                                                      p.next_attempt_unix_micros()),
                                                  absl::UTCTimeZone())));
        } else if (p.next_attempt_unix_micros() == 0) {
          where = "not here yet: waiting for the release conditions to be accepted";
        }
      }
      out << "evidence:  " << f.name() << ", " << f.size() << " bytes, sha256 "
          << HexEncode(f.sha256()).substr(0, 16) << "...: " << where << "\n";
    }
  }
}

Struct SummaryJson(const v1::RequestRecord& r, const v1::RequestBody& body) {
  Struct s;
  auto& f = *s.mutable_fields();
  f["id"] = Str(body.id());
  f["direction"] = Str(DirectionName(r.direction()));
  f["state"] = Str(v1::RequestState_Name(r.state()));
  f["requesting_party"] = Str(body.requesting_party());
  f["requested_party"] = Str(body.requested_party());
  f["assistance_type"] = Str(v1::AssistanceType_Name(body.assistance_type()));
  f["offence"] = Str(v1::OffenceCategory_Name(body.offence().category()));
  f["urgency"] = Str(v1::Urgency_Name(body.urgency()));
  f["created_at"] = Str(FormatTs(body.created_at()));
  f["stored_at"] = Str(FormatTs(r.stored_at()));
  f["updated_at"] = Str(FormatTs(r.updated_at()));
  f["delivery_attempts"] = Num(r.delivery_attempts());
  if (!r.last_error().empty()) f["last_error"] = Str(r.last_error());
  if (r.case_state() != v1::CASE_STATE_UNSPECIFIED) {
    f["case_state"] = Str(v1::CaseState_Name(r.case_state()));
  }
  if (r.has_next_attempt_at()) f["next_attempt_at"] = Str(FormatTs(r.next_attempt_at()));
  if (!r.submitted_by().empty()) f["submitted_by"] = Str(r.submitted_by());
  if (body.has_requester_assessment()) {
    f["obligation"] = Str(v1::Obligation_Name(body.requester_assessment().obligation()));
    f["instrument"] = Str(body.requester_assessment().instrument());
  }
  return s;
}

Struct VerificationJson(const v1::RequestRecord& r, const Verification& v) {
  Struct s;
  auto& f = *s.mutable_fields();
  Struct sig;
  (*sig.mutable_fields())["signer_party"] = Str(r.request().signer_party());
  (*sig.mutable_fields())["key_id"] = Str(r.request().key_id());
  (*sig.mutable_fields())["verified"] = Bool(v.signature.ok());
  if (!v.signature.ok()) (*sig.mutable_fields())["error"] = Str(v.signature.ToString());
  f["signature"] = Obj(std::move(sig));
  if (v.has_receipt) {
    Struct rc;
    auto& rf = *rc.mutable_fields();
    rf["signer_party"] = Str(r.receipt().signer_party());
    rf["key_id"] = Str(r.receipt().key_id());
    rf["verified"] = Bool(v.receipt.ok());
    if (v.receipt.ok()) {
      if (v.parsed_receipt.has_receiver_assessment()) {
        std::string json;
        google::protobuf::util::JsonPrintOptions opts;
        opts.preserve_proto_field_names = true;
        (void)google::protobuf::util::MessageToJsonString(
            v.parsed_receipt.receiver_assessment(), &json, opts);
        Struct assessment;
        (void)google::protobuf::util::JsonStringToMessage(json, &assessment);
        rf["receiver_assessment"] = Obj(std::move(assessment));
      }
      v1::RequestBody body;
      if (body.ParseFromString(r.request().payload()) && body.has_requester_assessment() &&
          v.parsed_receipt.has_receiver_assessment()) {
        f["assessments_agree"] =
            Bool(Agree(body.requester_assessment(), v.parsed_receipt.receiver_assessment()));
      }
      rf["received_at"] = Str(FormatTs(v.parsed_receipt.received_at()));
      rf["request_payload_sha256"] = Str(HexEncode(v.parsed_receipt.request_payload_sha256()));
    } else {
      rf["error"] = Str(v.receipt.ToString());
    }
    f["receipt"] = Obj(std::move(rc));
  } else {
    Value null_value;
    null_value.set_null_value(google::protobuf::NULL_VALUE);
    f["receipt"] = null_value;
  }
  return s;
}

void PrintVerification(std::ostream& out, const v1::RequestRecord& r, const Verification& v,
                       const std::string& peer) {
  out << "signature: " << r.request().signer_party() << " key " << r.request().key_id()
      << ": " << (v.signature.ok() ? "verified" : "FAILED: " + v.signature.ToString())
      << "\n";
  if (r.state() == v1::AWAITING_APPROVAL) {
    out << "signature: none yet: awaiting approval by a second operator (comity approve)\n";
    return;
  }
  if (r.state() == v1::DELIVERY_REJECTED) {
    out << "receipt:   none: " << peer << " refused the request for good (" << r.last_error()
        << "); it is not retried, submit a corrected request\n";
    return;
  }
  if (!v.has_receipt) {
    out << "receipt:   none yet";
    if (r.direction() == v1::OUTGOING) {
      out << " (" << peer << " has not acknowledged; attempts " << r.delivery_attempts();
      if (!r.last_error().empty()) out << ", last error: " << r.last_error();
      if (r.has_next_attempt_at()) out << "; next attempt " << FormatTs(r.next_attempt_at());
      out << ")";
    }
    out << "\n";
    return;
  }
  out << "receipt:   " << r.receipt().signer_party() << " key " << r.receipt().key_id()
      << ": ";
  if (v.receipt.ok()) {
    out << "verified; received at " << FormatTs(v.parsed_receipt.received_at())
        << ", request sha256 " << HexEncode(v.parsed_receipt.request_payload_sha256())
        << "\n";
  } else {
    out << "FAILED: " << v.receipt.ToString() << "\n";
  }
}

// --- Commands. ---

int Cli::Run(const std::vector<std::string>& args) {
  if (std::optional<int> code = HandleHelpOrVersion(args, out_)) return *code;
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
  } else if (CaseActionFor(command) != v1::CASE_ACTION_UNSPECIFIED) {
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
    return Fail({kExitUsage, absl::StrCat(parsed.status().message(), " (for ",
                                          command.empty() ? "comity" : command,
                                          "; see 'comity help')")});
  }
  if (command == "help" || command.empty() || parsed->switches.count("help")) {
    out_ << GlobalUsage();
    return kExitOk;
  }
  json_ = parsed->switches.count("json") != 0;
  // The first positional is the command.
  parsed->positional.erase(parsed->positional.begin());
  if (command == "show" || command == "approve" || command == "export" || command == "fetch" ||
      CaseActionFor(command) != v1::CASE_ACTION_UNSPECIFIED) {
    if (parsed->positional.size() != 1) {
      return Fail({kExitUsage, absl::StrCat(command, " takes exactly one request id: comity ",
                                            command, " ID")});
    }
  } else if (!parsed->positional.empty()) {
    return Fail({kExitUsage, absl::StrCat("unexpected argument '", parsed->positional[0],
                                          "' for ", command)});
  }
  if (absl::Status st = Connect(*parsed); !st.ok()) {
    return Fail({absl::IsInvalidArgument(st) && st.message().find("--connect") !=
                                                    std::string::npos
                     ? kExitUsage
                     : kExitFailure,
                 std::string(st.message())});
  }
  if (command == "submit") return Submit(*parsed);
  if (command == "approve") return Approve(*parsed);
  if (CaseActionFor(command) != v1::CASE_ACTION_UNSPECIFIED) {
    return Decide(*parsed, CaseActionFor(command));
  }
  if (command == "inbox") return Inbox(*parsed);
  if (command == "overdue") return Overdue(*parsed);
  if (command == "peers") return Peers(*parsed);
  if (command == "fetch") return Fetch(*parsed);
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
  return {kExitFailure, DescribeRpcError(address_, status)};
}

void Cli::PrintJson(const Value& value) {
  std::string text;
  google::protobuf::util::JsonPrintOptions opts;
  opts.add_whitespace = false;
  (void)google::protobuf::util::MessageToJsonString(value, &text, opts);
  out_ << text << "\n";
}

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
    return Fail({kExitFailure,
                 "the node did not answer within 60 s; it may have stored the request and "
                 "be delivering it: check 'comity list --sent' before submitting again"});
  }
  if (!status.ok()) return Fail(RpcError(status));
  return PrintSubmitted(resp.record(), resp.signer_keys());
}

int Cli::PrintSubmitted(const v1::RequestRecord& r,
                        const google::protobuf::RepeatedPtrField<v1::PublicKey>& keys) {
  v1::RequestBody body;
  body.ParseFromString(r.request().payload());
  Verification v = Verify(r, body, keys);
  const bool awaiting = r.state() == v1::AWAITING_APPROVAL;
  bool good = awaiting || (v.signature.ok() && (!v.has_receipt || v.receipt.ok()));
  if (json_) {
    Struct s = SummaryJson(r, body);
    if (!awaiting) (*s.mutable_fields())["verification"] = Obj(VerificationJson(r, v));
    PrintJson(Obj(std::move(s)));
  } else {
    out_ << "submitted " << body.id() << ": " << body.requesting_party() << " -> "
         << body.requested_party() << ", " << v1::AssistanceType_Name(body.assistance_type())
         << ", " << v1::OffenceCategory_Name(body.offence().category()) << "\n";
    out_ << "state:     " << v1::RequestState_Name(r.state());
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

int Cli::Decide(const ParsedArgs& args, v1::CaseAction action) {
  v1::DecideRequestRequest req;
  req.set_id(args.positional[0]);
  req.set_action(action);
  for (const std::string& g : args.GetAll("ground")) {
    auto ground = ParseEnum<v1::RefusalGround>(v1::RefusalGround_descriptor(), "ground", g);
    if (!ground.ok()) return Fail({kExitUsage, std::string(ground.status().message())});
    req.add_refusal_grounds(*ground);
  }
  req.set_reasons(args.Get("reasons"));
  req.set_consultation(args.Get("consultation"));
  req.set_text(args.Get("text"));
  req.set_final_response(args.switches.count("final") != 0);
  for (const std::string& c : args.GetAll("condition")) req.add_release_conditions(c);
  if ((args.Has("file") || args.Has("import")) && action != v1::RESPOND) {
    return Fail({kExitUsage, "--file and --import go only with respond"});
  }
  // Files are read here and uploaded; the node opens no path we name.
  for (const std::string& path : args.GetAll("file")) {
    absl::StatusOr<v1::EvidenceFile> staged =
        UploadEvidenceFile(stub_.get(), req.id(), path);
    if (!staged.ok()) {
      return Fail({kExitFailure, std::string(staged.status().message())});
    }
    req.add_evidence_sha256(staged->sha256());
  }
  for (const std::string& name : args.GetAll("import")) {
    v1::ImportEvidenceRequest import;
    import.set_request_id(req.id());
    import.set_name(name);
    v1::ImportEvidenceResponse imported;
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Hours(24)));
    grpc::Status status = stub_->ImportEvidence(&ctx, import, &imported);
    if (!status.ok()) return Fail(RpcError(status));
    req.add_evidence_sha256(imported.file().sha256());
  }
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  v1::DecideRequestResponse resp;
  grpc::Status status = stub_->DecideRequest(&ctx, req, &resp);
  if (!status.ok()) return Fail(RpcError(status));
  const v1::RequestRecord& r = resp.record();
  v1::Transition last;
  if (r.transitions_size() > 0) last.ParseFromString(r.transitions().rbegin()->payload());
  if (json_) {
    v1::RequestBody body;
    body.ParseFromString(r.request().payload());
    Struct s = SummaryJson(r, body);
    (*s.mutable_fields())["step"] = Num(last.sequence());
    if (r.queued_proposals_size() > 0) {
      (*s.mutable_fields())["queued_proposals"] = Num(r.queued_proposals_size());
    }
    PrintJson(Obj(std::move(s)));
  } else if (r.queued_proposals_size() > 0) {
    v1::RequestBody body;
    body.ParseFromString(r.request().payload());
    out_ << "request " << req.id() << ": " << v1::CaseAction_Name(action)
         << " signed and queued for " << body.requested_party()
         << ", which cannot be reached now; it is delivered when it can (see 'comity peers')."
         << " The case stays " << v1::CaseState_Name(r.case_state()) << " until then.\n";
  } else {
    out_ << "request " << req.id() << " is now " << v1::CaseState_Name(r.case_state())
         << " (step " << last.sequence() << ", signed"
         << (r.direction() == v1::INCOMING
                 ? "; delivered to the requesting party in the background)"
                 : " by both parties)")
         << "\n";
    for (const auto& duty : last.open_duties()) out_ << "open duty: " << duty << "\n";
    for (const auto& c : last.accepted_conditions()) out_ << "accepted condition: " << c << "\n";
  }
  return kExitOk;
}

// The name an evidence file is saved under: the responding party's, unless
// it could reach outside the --out directory; then its SHA-256 in hex.
std::string ExportName(const v1::EvidenceFile& listed) {
  const std::string& name = listed.name();
  if (name.empty() || name == "." || name == ".." ||
      name.find_first_of(std::string("/\0", 2)) != std::string::npos) {
    return HexEncode(listed.sha256());
  }
  return name;
}

int Cli::Export(const ParsedArgs& args) {
  if (!args.Has("out")) return Fail({kExitUsage, "export needs --out DIR"});
  const std::string dir = args.Get("out");
  v1::GetRequestRequest get;
  get.set_id(args.positional[0]);
  v1::GetRequestResponse found;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(15)));
    grpc::Status status = stub_->GetRequest(&ctx, get, &found);
    if (!status.ok()) return Fail(RpcError(status));
  }
  Value files;
  files.mutable_list_value();
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
          if (f.sha256() == stored.sha256()) {
            listed = f;
            sized = true;
          }
        }
      }
    }
    const std::string path = absl::StrCat(dir, "/", ExportName(listed));
    auto file = VerifiedFileWriter::Create(path);
    if (!file.ok()) return Fail({kExitFailure, std::string(file.status().message())});
    grpc::ClientContext ctx;
    v1::ExportEvidenceRequest req;
    req.set_id(get.id());
    req.set_sha256(stored.sha256());
    req.set_allow_tlp_red(args.switches.count("allow-tlp-red") != 0);
    auto reader = stub_->ExportEvidence(&ctx, req);
    v1::EvidenceChunk chunk;
    absl::Status written = absl::OkStatus();
    while (written.ok() && reader->Read(&chunk)) written = (*file)->Append(chunk.data());
    if (!written.ok()) ctx.TryCancel();
    grpc::Status status = reader->Finish();
    if (!written.ok()) return Fail({kExitFailure, std::string(written.message())});
    if (!status.ok()) return Fail(RpcError(status));
    // Checked against the hash asked for and the size the step declares.
    auto sha256 = (*file)->Commit(
        sized ? std::optional<uint64_t>(listed.size()) : std::nullopt, stored.sha256());
    if (!sha256.ok()) return Fail({kExitFailure, std::string(sha256.status().message())});
    const uint64_t bytes = (*file)->size();
    if (json_) {
      Struct s;
      auto& f = *s.mutable_fields();
      f["path"] = Str(path);
      f["bytes"] = Num(static_cast<double>(bytes));
      f["sha256"] = Str(*sha256);
      *files.mutable_list_value()->add_values() = Obj(std::move(s));
    } else {
      out_ << WroteLine(path, bytes, *sha256) << "\n";
    }
  }
  if (json_) {
    Struct s;
    (*s.mutable_fields())["id"] = Str(get.id());
    (*s.mutable_fields())["files"] = files;
    PrintJson(Obj(std::move(s)));
  } else if (found.stored_evidence_size() == 0) {
    out_ << "(no evidence held here for this request)\n";
  }
  return kExitOk;
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
  Value list;
  list.mutable_list_value();
  for (const v1::PeerStatus& p : resp.peers()) {
    if (json_) {
      Struct s;
      auto& f = *s.mutable_fields();
      f["party"] = Str(p.party());
      f["address"] = Str(p.address());
      f["reachable"] = Bool(p.reachable());
      f["last_contact"] = Str(when(p.last_contact_unix_micros()));
      f["requests_queued"] = Num(p.requests_queued());
      f["transitions_queued"] = Num(p.transitions_queued());
      f["consecutive_failures"] = Num(p.consecutive_failures());
      f["evidence_pending"] = Num(p.evidence_pending());
      f["evidence_given_up"] = Num(p.evidence_given_up());
      if (p.next_attempt_unix_micros() != 0) {
        f["next_attempt"] = Str(when(p.next_attempt_unix_micros()));
      }
      if (!p.last_error().empty()) f["last_error"] = Str(p.last_error());
      *list.mutable_list_value()->add_values() = Obj(std::move(s));
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

int Cli::Fetch(const ParsedArgs& args) {
  v1::RetryEvidenceRequest req;
  req.set_id(args.positional[0]);
  v1::RetryEvidenceResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(15)));
  grpc::Status status = stub_->RetryEvidence(&ctx, req, &resp);
  if (!status.ok()) return Fail(RpcError(status));
  if (json_) {
    Struct s;
    (*s.mutable_fields())["id"] = Str(req.id());
    (*s.mutable_fields())["files"] = Num(resp.files());
    PrintJson(Obj(std::move(s)));
  } else {
    out_ << "request " << req.id() << ": " << resp.files()
         << " evidence files to fetch again now (comity show " << req.id()
         << " follows them)\n";
  }
  return kExitOk;
}

int Cli::Overdue(const ParsedArgs&) {
  // Every page: what is late may be old.
  std::vector<v1::CaseDeadline> deadlines;
  grpc::Status status = ListOverduePages(*stub_, absl::Seconds(30), &deadlines);
  if (!status.ok()) return Fail(RpcError(status));
  Value list;
  list.mutable_list_value();
  for (const v1::CaseDeadline& d : deadlines) {
    const std::string due = absl::FormatTime("%Y-%m-%dT%H:%M:%SZ",
                                             absl::FromUnixMicros(d.due_unix_micros()),
                                             absl::UTCTimeZone());
    if (json_) {
      Struct s;
      auto& f = *s.mutable_fields();
      f["request_id"] = Str(d.request_id());
      f["direction"] = Str(DirectionName(d.direction()));
      f["kind"] = Str(d.kind());
      f["due"] = Str(due);
      f["overdue"] = Bool(d.overdue());
      f["expiring"] = Bool(d.expiring());
      f["party"] = Str(d.party());
      f["obligation"] = Str(v1::Obligation_Name(d.obligation()));
      f["description"] = Str(d.description());
      *list.mutable_list_value()->add_values() = Obj(std::move(s));
      continue;
    }
    out_ << (d.overdue() ? "LATE    " : "EXPIRES ") << d.kind() << "  " << d.request_id() << "  ("
         << DirectionName(d.direction()) << ", " << v1::Obligation_Name(d.obligation())
         << ") due " << due << ": " << d.description() << "\n";
  }
  if (json_) {
    PrintJson(list);
  } else if (deadlines.empty()) {
    out_ << "(nothing is late)\n";
  }
  return kExitOk;
}

int Cli::Inbox(const ParsedArgs&) {
  // Every request held, page after page: what waits may be old.
  std::vector<v1::RequestRecord> records;
  grpc::Status status = ListRequestPages(*stub_, v1::DIRECTION_UNSPECIFIED, 0,
                                         absl::Seconds(15), &records);
  if (!status.ok()) return Fail(RpcError(status));
  Value list;
  list.mutable_list_value();
  int shown = 0;
  for (const v1::RequestRecord& r : records) {
    const char* action = r.state() == v1::AWAITING_APPROVAL ? "approve"
                         : r.state() == v1::RECEIVED && !IsFinalCaseState(r.case_state())
                             ? "decide"
                         : r.state() == v1::DELIVERY_REJECTED ? "resubmit"
                                                              : nullptr;
    if (action == nullptr) continue;
    ++shown;
    v1::RequestBody body;
    body.ParseFromString(r.request().payload());
    if (json_) {
      Struct s = SummaryJson(r, body);
      (*s.mutable_fields())["action"] = Str(action);
      *list.mutable_list_value()->add_values() = Obj(std::move(s));
      continue;
    }
    out_ << action << "  " << body.id() << "  " << body.requesting_party() << " -> "
         << body.requested_party() << "  " << v1::AssistanceType_Name(body.assistance_type())
         << "  " << v1::RequestState_Name(r.state());
    if (!r.submitted_by().empty()) out_ << "  submitted by " << r.submitted_by();
    out_ << "\n";
  }
  if (json_) {
    PrintJson(list);
  } else if (shown == 0) {
    out_ << "(nothing waits for you)\n";
  }
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
  Value list;
  list.mutable_list_value();
  if (!json_) {
    out_ << "ID                                    DIR       FROM TO  TYPE                     STATE\n";
  }
  for (const v1::RequestRecord& r : resp.records()) {
    v1::RequestBody body;
    body.ParseFromString(r.request().payload());
    if (json_) {
      *list.mutable_list_value()->add_values() = Obj(SummaryJson(r, body));
      continue;
    }
    char line[256];
    std::snprintf(line, sizeof(line), "%-37s %-9s %-4s %-3s %-24s %s", body.id().c_str(),
                  DirectionName(r.direction()).c_str(), body.requesting_party().c_str(),
                  body.requested_party().c_str(),
                  v1::AssistanceType_Name(body.assistance_type()).c_str(),
                  r.case_state() != v1::CASE_STATE_UNSPECIFIED
                      ? v1::CaseState_Name(r.case_state()).c_str()
                      : v1::RequestState_Name(r.state()).c_str());
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
  Value list;
  list.mutable_list_value();
  if (req.chain() && !json_) {
    out_ << "chain of " << resp.records_size() << " request record(s), oldest first:\n";
    int n = 0;
    for (const v1::RequestRecord& r : resp.records()) {
      v1::RequestBody body;
      body.ParseFromString(r.request().payload());
      out_ << "  " << ++n << ". " << FormatTs(body.created_at()) << "  "
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
    Verification v = Verify(r, body, resp.signer_keys());
    good = good && (r.state() == v1::AWAITING_APPROVAL ||
                    (v.signature.ok() && (!v.has_receipt || v.receipt.ok())));
    if (json_) {
      Struct s = SummaryJson(r, body);
      std::string body_json;
      (void)google::protobuf::util::MessageToJsonString(body, &body_json);
      Struct body_struct;
      (void)google::protobuf::util::JsonStringToMessage(body_json, &body_struct);
      (*s.mutable_fields())["body"] = Obj(std::move(body_struct));
      (*s.mutable_fields())["verification"] = Obj(VerificationJson(r, v));
      // The signed steps this node holds (list does not load them): both
      // parties must hold the same number.
      if (r.case_state() != v1::CASE_STATE_UNSPECIFIED) {
        (*s.mutable_fields())["steps"] = Num(r.transitions_size());
      }
      *list.mutable_list_value()->add_values() = Obj(std::move(s));
      continue;
    }
    out_ << "request " << body.id() << " (" << DirectionName(r.direction()) << ", "
         << v1::RequestState_Name(r.state()) << ")\n";
    out_ << "stored:    " << FormatTs(r.stored_at());
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
    PrintCase(out_, r, resp.signer_keys());
    PrintEvidence(out_, r, resp);
  }
  if (json_) PrintJson(resp.records_size() == 1 ? list.list_value().values(0) : list);
  if (!good) {
    err_ << "comity: verification failed for request " << req.id() << "\n";
    return kExitFailure;
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
