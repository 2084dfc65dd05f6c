#include "client/case_cli.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/case_view.h"
#include "client/connection.h"
#include "client/evidence_upload.h"
#include "client/list_pages.h"
#include "client/output.h"
#include "client/record_output.h"
#include "client/worklist.h"

namespace comity {
namespace {

// The verbs, with what they share: the node and where they report.
class CaseVerbs {
 public:
  CaseVerbs(v1::OperatorService::Stub& stub, const std::string& address, bool json,
            std::ostream& out, std::ostream& err)
      : stub_(&stub), address_(address), json_(json), out_(out), err_(err) {}

  int Decide(const ParsedArgs& args, v1::CaseAction action);
  int Fetch(const ParsedArgs& args);
  int Inbox();
  int Overdue();

 private:
  int Fail(const CliError& e) { return ReportError(err_, json_, "comity", e); }
  CliError RpcError(const grpc::Status& status) const {
    return RpcCliError(address_, status);
  }
  void PrintJson(const JsonValue& value) { out_ << value.Dump() << "\n"; }

  v1::OperatorService::Stub* const stub_;  // Not owned.
  const std::string address_;
  const bool json_;
  std::ostream& out_;
  std::ostream& err_;
};

int CaseVerbs::Decide(const ParsedArgs& args, v1::CaseAction action) {
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
        UploadEvidenceFile(stub_, req.id(), path);
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
    JsonValue s = RecordSummaryJson(r, body);
    s.Set("step", last.sequence());
    if (r.queued_proposals_size() > 0) s.Set("queued_proposals", r.queued_proposals_size());
    PrintJson(s);
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

int CaseVerbs::Fetch(const ParsedArgs& args) {
  v1::RetryEvidenceRequest req;
  req.set_id(args.positional[0]);
  v1::RetryEvidenceResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(15)));
  grpc::Status status = stub_->RetryEvidence(&ctx, req, &resp);
  if (!status.ok()) return Fail(RpcError(status));
  if (json_) {
    PrintJson(JsonValue::Object().Set("id", req.id()).Set("files", resp.files()));
  } else {
    out_ << "request " << req.id() << ": " << resp.files()
         << " evidence files to fetch again now (comity show " << req.id()
         << " follows them)\n";
  }
  return kExitOk;
}

int CaseVerbs::Overdue() {
  // Every page: what is late may be old.
  std::vector<v1::CaseDeadline> deadlines;
  grpc::Status status = ListOverduePages(*stub_, absl::Seconds(30), &deadlines);
  if (!status.ok()) return Fail(RpcError(status));
  JsonValue list = JsonValue::Array();
  for (const v1::CaseDeadline& d : deadlines) {
    const std::string due = absl::FormatTime("%Y-%m-%dT%H:%M:%SZ",
                                             absl::FromUnixMicros(d.due_unix_micros()),
                                             absl::UTCTimeZone());
    if (json_) {
      list.Add(DeadlineJson(d, absl::Now()));
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

int CaseVerbs::Inbox() {
  // Every request held, page after page: what waits may be old.
  std::vector<v1::RequestRecord> records;
  grpc::Status status = ListRequestPages(*stub_, v1::DIRECTION_UNSPECIFIED, 0,
                                         absl::Seconds(15), &records);
  if (!status.ok()) return Fail(RpcError(status));
  // Lists carry no steps: a sent case with a response may have conditions
  // pending, which only its steps say.
  for (v1::RequestRecord& r : records) {
    if (r.direction() != v1::OUTGOING || r.transitions_size() > 0 ||
        (r.case_state() != v1::CASE_PARTLY_EXECUTED && r.case_state() != v1::CASE_EXECUTED)) {
      continue;
    }
    v1::RequestBody body;
    if (!body.ParseFromString(r.request().payload())) continue;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(15));
    v1::GetRequestRequest get;
    get.set_id(body.id());
    v1::GetRequestResponse found;
    grpc::Status got = stub_->GetRequest(&ctx, get, &found);
    if (!got.ok()) return Fail(RpcError(got));
    for (const v1::RequestRecord& full : found.records()) {
      if (full.direction() == v1::OUTGOING) r = full;
    }
  }
  const std::vector<WorkItem> items = BuildWorklist(records);
  const absl::Time now = absl::Now();
  auto left = [now](absl::Time deadline) -> std::string {
    if (deadline == absl::InfiniteFuture()) return "-";
    const absl::Duration d = deadline - now;
    const int64_t h = absl::ToInt64Hours(absl::AbsDuration(d));
    const std::string span =
        h >= 48 ? absl::StrCat(h / 24, "d", h % 24, "h")
                : absl::StrCat(h, "h", absl::ToInt64Minutes(absl::AbsDuration(d)) % 60, "m");
    return d < absl::ZeroDuration() ? "overdue " + span : span;
  };
  if (json_) {
    JsonValue list = JsonValue::Array();
    for (const WorkItem& w : items) {
      JsonValue next = JsonValue::Array();
      for (const std::string& v : w.next) next.Add(v);
      JsonValue conditions = JsonValue::Array();
      for (const std::string& c : w.pending_conditions) conditions.Add(c);
      JsonValue item = JsonValue::Object();
      item.Set("id", w.id)
          .Set("direction", w.direction)
          .Set("partner", w.partner)
          .Set("assistance_type", w.assistance_type)
          .Set("urgency", w.urgency)
          .Set("state", w.state)
          .Set("waits_on", w.waits_on)
          .Set("why", w.why)
          .Set("next", std::move(next))
          .Set("pending_conditions", std::move(conditions));
      if (w.deadline != absl::InfiniteFuture()) {
        item.Set("deadline",
                 absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", w.deadline, absl::UTCTimeZone()))
            .Set("seconds_left", static_cast<int64_t>(absl::ToInt64Seconds(w.deadline - now)));
      }
      list.Add(std::move(item));
    }
    PrintJson(list);
    return kExitOk;
  }
  if (items.empty()) {
    out_ << "(nothing waits: no open case, draft or refused request)\n";
    return kExitOk;
  }
  out_ << "WAITS ON  DEADLINE              LEFT      URGENCY    ID                                    "
          "PARTNER  TYPE / STATE\n";
  for (const WorkItem& w : items) {
    char line[512];
    const std::string due =
        w.deadline == absl::InfiniteFuture()
            ? "-"
            : absl::FormatTime("%Y-%m-%dT%H:%MZ", w.deadline, absl::UTCTimeZone());
    const std::string who = (w.direction == "received" ? "from " : "to ") + w.partner;
    std::snprintf(line, sizeof(line), "%-9s %-21s %-9s %-10s %-37s %-8s %s / %s",
                  w.waits_on.c_str(), due.c_str(), left(w.deadline).c_str(), w.urgency.c_str(),
                  w.id.c_str(), who.c_str(), w.assistance_type.c_str(), w.state.c_str());
    out_ << line << "\n";
    out_ << "          " << w.why;
    if (!w.next.empty()) {
      out_ << "; next: ";
      for (size_t i = 0; i < w.next.size(); ++i) {
        out_ << (i ? ", " : "") << "comity " << w.next[i] << " " << w.id;
      }
    }
    out_ << "\n";
    for (const std::string& c : w.pending_conditions) {
      out_ << "          pending condition (blocks the evidence): " << c << "\n";
    }
  }
  return kExitOk;
}

}  // namespace

v1::CaseAction CaseActionForCommand(const std::string& command) {
  static const auto* actions = new std::map<std::string, v1::CaseAction>{
      {"ack", v1::ACKNOWLEDGE},     {"review", v1::START_REVIEW}, {"accept", v1::ACCEPT},
      {"refuse", v1::REFUSE},       {"postpone", v1::POSTPONE},   {"ask", v1::REQUEST_INFO},
      {"respond", v1::RESPOND},     {"close", v1::CLOSE},         {"withdraw", v1::WITHDRAW},
      {"answer", v1::PROVIDE_INFO}, {"accept-conditions", v1::ACCEPT_CONDITIONS}};
  auto it = actions->find(command);
  return it == actions->end() ? v1::CASE_ACTION_UNSPECIFIED : it->second;
}

int RunCaseAction(v1::OperatorService::Stub& stub, const std::string& address,
                  const ParsedArgs& args, v1::CaseAction action, bool json,
                  std::ostream& out, std::ostream& err) {
  return CaseVerbs(stub, address, json, out, err).Decide(args, action);
}

int RunFetchEvidence(v1::OperatorService::Stub& stub, const std::string& address,
                     const ParsedArgs& args, bool json, std::ostream& out,
                     std::ostream& err) {
  return CaseVerbs(stub, address, json, out, err).Fetch(args);
}

int RunInbox(v1::OperatorService::Stub& stub, const std::string& address, bool json,
             std::ostream& out, std::ostream& err) {
  return CaseVerbs(stub, address, json, out, err).Inbox();
}

int RunOverdue(v1::OperatorService::Stub& stub, const std::string& address, bool json,
               std::ostream& out, std::ostream& err) {
  return CaseVerbs(stub, address, json, out, err).Overdue();
}

}  // namespace comity
