#include "client/treaty_cli.h"

#include <cstdio>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/args.h"
#include "client/output.h"
#include "google/protobuf/struct.pb.h"
#include "client/usage.h"
#include "google/protobuf/util/json_util.h"
#include "server/config/node_config.h"
#include "server/core/request_fields.h"
#include "server/treaty/engine.h"
#include "server/treaty/library.h"
#include "server/util/files.h"
#include "server/util/status_macros.h"
#include "server/util/text_proto.h"

namespace comity {
namespace {


class TreatyCli {
 public:
  TreatyCli(const GetEnv& env, std::ostream& out, std::ostream& err)
      : env_(env), out_(out), err_(err) {}
  int Run(const std::vector<std::string>& args);

 private:
  int Fail(int code, absl::string_view message, absl::string_view hint = "") {
    return ReportError(err_, json_, "comity",
                       CliError(code, std::string(message), std::string(hint)));
  }
  absl::StatusOr<AssessmentQuery> Query(const ParsedArgs& a, bool need_to);
  int Check(const ParsedArgs& a);
  int Matrix(const ParsedArgs& a);
  int Parties(const ParsedArgs& a);
  int Show(const ParsedArgs& a);
  absl::StatusOr<absl::CivilDay> Date(const ParsedArgs& a);
  void PrintAssessment(const v1::Assessment& as);

  const GetEnv& env_;
  std::ostream& out_;
  std::ostream& err_;
  bool json_ = false;
  std::unique_ptr<TreatyLibrary> lib_;
  v1::RequestBody request_;  // From --request.
};

// A message with every field, set or not (a consumer need not know the
// defaults), in the one output layer.
JsonValue Json(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = true;
  opts.always_print_primitive_fields = true;
  std::string s;
  google::protobuf::Value v;
  if (!google::protobuf::util::MessageToJsonString(m, &s, opts).ok() ||
      !google::protobuf::util::JsonStringToMessage(s, v.mutable_struct_value()).ok()) {
    return JsonValue();
  }
  return JsonValue::FromProtoValue(v);
}

std::string Grounds(const v1::Assessment& a) {
  std::vector<std::string> g;
  for (int x : a.refusal_grounds()) g.push_back(v1::RefusalGround_Name(static_cast<v1::RefusalGround>(x)));
  return g.empty() ? "-" : absl::StrJoin(g, ",");
}

int TreatyCli::Run(const std::vector<std::string>& args) {
  json_ = WantsJson(args);  // Even a usage error is JSON then.
  const std::string command = FindCommand(args, {"treaties", "from", "date", "connect"});
  FlagSpec spec;
  spec.with_value = {"treaties", "date", "connect"};  // --connect is not needed here.
  spec.switches = {"json", "help"};
  if (command == "check" || command == "matrix") {
    spec.with_value.insert({"from", "type", "offence", "dual-criminality", "penalty-months",
                            "requested-penalty-months", "request", "urgency"});
    spec.switches.insert("follows-preservation");
    if (command == "check") spec.with_value.insert("to");
  } else if (command == "parties" || command == "show") {
  } else if (command == "help") {
    out_ << UsageText("treaty");
    return kExitOk;
  } else if (command.empty()) {
    if (json_) return Fail(kExitUsage, "treaty needs a command", "comity treaty help");
    out_ << UsageText("treaty");
    return kExitUsage;
  } else {
    return Fail(kExitUsage, absl::StrCat("unknown treaty command '", command,
                                         "'; commands: check, matrix, parties, show"));
  }
  auto parsed = ParseSubcommand(args, spec, "treaty", command);
  if (!parsed.ok()) return Fail(kExitUsage, parsed.status().message());
  if (parsed->switches.count("help")) {
    out_ << UsageText("treaty " + command);
    return kExitOk;
  }
  json_ = parsed->switches.count("json") != 0;
  if (command == "show" ? parsed->positional.size() != 1 : !parsed->positional.empty()) {
    return Fail(kExitUsage, command == "show"
                                ? "treaty show takes one instrument id, e.g. ETS185"
                                : absl::StrCat("unexpected argument '", parsed->positional[0],
                                               "'"));
  }
  std::string dir = parsed->Get("treaties", env_("COMITY_TREATIES"));
  if (dir.empty()) {
    return Fail(kExitUsage,
                "no treaty library: pass --treaties DIR (e.g. deploy/treaties) or set "
                "COMITY_TREATIES");
  }
  auto lib = TreatyLibrary::LoadDirectory(dir);
  if (!lib.ok()) {
    return Fail(absl::IsNotFound(lib.status()) ? kExitUsage : kExitFailure,
                lib.status().message(), "--treaties names the library, e.g. deploy/treaties");
  }
  lib_ = *std::move(lib);
  if (command == "check") return Check(*parsed);
  if (command == "matrix") return Matrix(*parsed);
  if (command == "parties") return Parties(*parsed);
  return Show(*parsed);
}

absl::StatusOr<absl::CivilDay> TreatyCli::Date(const ParsedArgs& a) {
  if (!a.Has("date")) return absl::CivilDay(absl::ToCivilDay(absl::Now(), absl::UTCTimeZone()));
  absl::CivilDay day;
  auto parsed = ParseDay(a.Get("date"));
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--date '", a.Get("date"), "' is not a date; write YYYY-MM-DD"));
  }
  return absl::CivilDay(1970, 1, 1) + *parsed;
}

absl::StatusOr<AssessmentQuery> TreatyCli::Query(const ParsedArgs& a, bool need_to) {
  COMITY_ASSIGN_OR_RETURN(absl::CivilDay date, Date(a));
  AssessmentQuery q;
  if (a.Has("request")) {
    COMITY_ASSIGN_OR_RETURN(std::string text, ReadFile(a.Get("request")));
    COMITY_RETURN_IF_ERROR(ParseTextProto(text, a.Get("request"), &request_));
    q = QueryForRequest(request_, date);
    if (q.requesting_party.empty() && a.Has("from")) q.requesting_party = a.Get("from");
  }
  q.date = date;
  if (a.Has("from")) q.requesting_party = absl::AsciiStrToUpper(a.Get("from"));
  if (a.Has("to")) q.requested_party = absl::AsciiStrToUpper(a.Get("to"));
  if (a.Has("type")) {
    COMITY_ASSIGN_OR_RETURN(q.assistance_type,
                            ParseEnum<v1::AssistanceType>(v1::AssistanceType_descriptor(), "type",
                                                          a.Get("type")));
  }
  if (a.Has("offence")) {
    COMITY_ASSIGN_OR_RETURN(q.offence, ParseEnum<v1::OffenceCategory>(
                                           v1::OffenceCategory_descriptor(), "offence",
                                           a.Get("offence")));
  }
  if (a.Has("dual-criminality")) {
    std::string dc = absl::AsciiStrToLower(a.Get("dual-criminality"));
    if (dc == "yes") {
      q.dual_criminality = v1::DUAL_CRIMINALITY_MET;
    } else if (dc == "no") {
      q.dual_criminality = v1::DUAL_CRIMINALITY_NOT_MET;
    } else if (dc == "unknown") {
      q.dual_criminality = v1::DUAL_CRIMINALITY_UNKNOWN;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "--dual-criminality '", a.Get("dual-criminality"), "' is not yes, no or unknown"));
    }
  }
  if (a.Has("urgency")) {
    COMITY_ASSIGN_OR_RETURN(q.urgency, ParseEnum<v1::Urgency>(v1::Urgency_descriptor(), "urgency",
                                                              a.Get("urgency")));
  }
  if (a.switches.count("follows-preservation")) q.follows_preservation = true;
  for (auto [flag, slot] : {std::pair<const char*, uint32_t*>{"penalty-months", &q.penalty_months},
                            {"requested-penalty-months", &q.requested_penalty_months}}) {
    if (!a.Has(flag)) continue;
    if (!absl::SimpleAtoi(a.Get(flag), slot)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, " '", a.Get(flag), "' is not a whole number of months"));
    }
  }
  if (q.requesting_party.empty()) return absl::InvalidArgumentError("--from XX is required");
  if (need_to && q.requested_party.empty()) {
    return absl::InvalidArgumentError("--to YY is required");
  }
  if (q.assistance_type == v1::ASSISTANCE_TYPE_UNSPECIFIED) {
    return absl::InvalidArgumentError("--type is required (e.g. PRESERVATION)");
  }
  if (q.offence == v1::OFFENCE_CATEGORY_UNSPECIFIED) {
    return absl::InvalidArgumentError("--offence is required (e.g. DATA_INTERFERENCE or OTHER)");
  }
  if (a.Has("request")) q.request = &request_;
  return q;
}

void TreatyCli::PrintAssessment(const v1::Assessment& as) {
  out_ << as.requesting_party() << " -> " << as.requested_party() << " on " << as.date() << ": "
       << v1::Obligation_Name(as.obligation());
  if (!as.instrument().empty()) out_ << " under " << as.instrument();
  out_ << "\n";
  if (as.obligation() == v1::UNKNOWN_PARTY) {
    out_ << "no conclusion:  the treaty library does not know a party's standing (see the "
            "reasoning); this is not NOT_COVERED\n";
  }
  if (!as.territory().empty()) out_ << "territory:      " << as.territory() << "\n";
  if (!as.procedure_instrument().empty() && as.procedure_instrument() != as.instrument()) {
    out_ << "procedure:      " << as.procedure_instrument() << "\n";
  }
  if (!as.basis().empty()) out_ << "basis:          " << absl::StrJoin(as.basis(), "; ") << "\n";
  for (const auto& m : as.missing()) {
    const absl::string_view flag = SubmitFlagOf(m.field());
    out_ << "missing:        " << (flag.empty() ? m.field() : absl::StrCat(flag, " (", m.field(), ")"))
         << ": " << m.basis() << (m.description().empty() ? "" : ", " + m.description()) << "\n";
  }
  out_ << "refusal grounds: " << Grounds(as) << "\n";
  if (!as.postponement_grounds().empty()) {
    std::vector<std::string> g;
    for (int x : as.postponement_grounds()) {
      g.push_back(v1::RefusalGround_Name(static_cast<v1::RefusalGround>(x)));
    }
    out_ << "postponement:   " << absl::StrJoin(g, ",") << " (postpone, not refuse)\n";
  }
  if (as.obligation() == v1::BINDING || as.obligation() == v1::DISCRETIONARY ||
      as.obligation() == v1::INVALID) {
    out_ << "dual criminality: " << (as.dual_criminality_required() ? "a condition" : "not a condition")
         << "\n";
  }
  if (as.deadline_days() > 0) out_ << "deadline:       " << as.deadline_days() << " days\n";
  if (as.deadline_hours() > 0) out_ << "emergency:      " << as.deadline_hours() << " hours\n";
  if (as.channel() != v1::CHANNEL_UNSPECIFIED) {
    out_ << "channel:        " << v1::Channel_Name(as.channel())
         << (as.channel_basis().empty() ? "" : " (" + as.channel_basis() + ")")
         << (as.authority().empty() ? "" : ": " + as.authority()) << "\n";
  }
  for (const auto& d : as.duties()) out_ << "duty:           " << d << "\n";
  if (!as.also_applicable().empty()) {
    out_ << "also applicable: " << absl::StrJoin(as.also_applicable(), ", ") << "\n";
  }
  if (!as.considered().empty()) {
    out_ << "instruments considered:\n";
    for (const auto& c : as.considered()) {
      std::string role = v1::InstrumentRole_Name(c.role());
      out_ << "  " << c.instrument() << ": " << absl::AsciiStrToLower(role) << " - " << c.reason()
           << "\n";
    }
  }
  out_ << "reasoning:\n";
  int n = 0;
  for (const auto& note : as.notes()) out_ << "  " << ++n << ". " << note << "\n";
  out_ << "library " << as.library_version().substr(0, 12) << "\n";
}

int TreatyCli::Check(const ParsedArgs& a) {
  auto q = Query(a, true);
  if (!q.ok()) return Fail(kExitUsage, q.status().message());
  auto as = Assess(*lib_, *q);
  if (!as.ok()) return Fail(kExitUsage, as.status().message());
  if (json_) {
    out_ << Json(*as).Dump() << "\n";
  } else {
    PrintAssessment(*as);
  }
  // An INVALID request would be refused by the node: not a success.
  return as->obligation() == v1::INVALID ? kExitFailure : kExitOk;
}

int TreatyCli::Matrix(const ParsedArgs& a) {
  auto q = Query(a, false);
  if (!q.ok()) return Fail(kExitUsage, q.status().message());
  std::vector<v1::Assessment> rows;
  for (const std::string& party : lib_->Parties()) {
    if (party == q->requesting_party) continue;
    AssessmentQuery one = *q;
    one.requested_party = party;
    auto as = Assess(*lib_, one);
    if (!as.ok()) return Fail(kExitUsage, as.status().message());
    rows.push_back(*std::move(as));
  }
  if (json_) {
    JsonValue items = JsonValue::Array();
    for (const auto& r : rows) items.Add(Json(r));
    out_ << items.Dump() << "\n";
    return kExitOk;
  }
  out_ << q->requesting_party << " -> *, " << v1::AssistanceType_Name(q->assistance_type) << ", "
       << v1::OffenceCategory_Name(q->offence) << ", on " << absl::FormatCivilTime(q->date)
       << "\n";
  char line[512];
  std::snprintf(line, sizeof(line), "%-3s %-14s %-18s %-28s %s", "TO", "OBLIGATION",
                "INSTRUMENT", "BASIS", "REFUSAL GROUNDS");
  out_ << line << "\n";
  for (const auto& r : rows) {
    std::string basis = r.basis().empty() ? "-" : r.basis(0);
    std::snprintf(line, sizeof(line), "%-3s %-14s %-18s %-28s %s", r.requested_party().c_str(),
                  v1::Obligation_Name(r.obligation()).c_str(),
                  r.instrument().empty() ? "-" : r.instrument().c_str(), basis.c_str(),
                  Grounds(r).c_str());
    out_ << line << "\n";
  }
  return kExitOk;
}

int TreatyCli::Parties(const ParsedArgs& a) {
  auto date = Date(a);
  if (!date.ok()) return Fail(kExitUsage, date.status().message());
  const Day day = ToDay(*date);
  JsonValue json_items = JsonValue::Array();
  if (!json_) out_ << "PARTY  BOUND ON " << absl::FormatCivilTime(*date) << " BY\n";
  for (const std::string& party : lib_->Parties()) {
    std::vector<std::string> bound, other;
    for (const InstrumentRecord* inst : lib_->InstrumentsOf(party)) {
      const PartyRecord* p = inst->Party(party);
      bool pol = inst->proto.kind() == v1::POLITICAL_DECLARATION;
      (p->BoundOn(day, pol) ? bound : other).push_back(inst->proto.id());
    }
    if (json_) {
      JsonValue b = JsonValue::Array(), o = JsonValue::Array();
      for (const std::string& id : bound) b.Add(id);
      for (const std::string& id : other) o.Add(id);
      json_items.Add(JsonValue::Object()
                         .Set("party", party)
                         .Set("bound", std::move(b))
                         .Set("not_bound", std::move(o)));
      continue;
    }
    out_ << party << "     " << (bound.empty() ? "-" : absl::StrJoin(bound, ", "));
    if (!other.empty()) out_ << "   (listed, not bound: " << absl::StrJoin(other, ", ") << ")";
    out_ << "\n";
  }
  if (json_) out_ << json_items.Dump() << "\n";
  return kExitOk;
}

int TreatyCli::Show(const ParsedArgs& a) {
  const InstrumentRecord* inst = lib_->Find(a.positional[0]);
  if (inst == nullptr) {
    std::vector<std::string> ids;
    for (const auto& i : lib_->instruments()) ids.push_back(i->proto.id());
    return Fail(kExitFailure, absl::StrCat("no instrument '", a.positional[0],
                                           "' in the library; it has: ", absl::StrJoin(ids, ", ")));
  }
  if (json_) {
    out_ << Json(inst->proto).Dump() << "\n";
    return kExitOk;
  }
  const v1::Instrument& in = inst->proto;
  out_ << in.id() << ": " << in.title() << "\n"
       << "kind:       " << v1::InstrumentKind_Name(in.kind()) << "\n"
       << "in force:   "
       << (inst->general_in_force == kNever
               ? absl::StrCat("no (", inst->consents, " consents",
                              in.entry_into_force_rule().min_consents() > 0
                                  ? absl::StrCat(" of ", in.entry_into_force_rule().min_consents(),
                                                 " needed")
                                  : "",
                              ")")
               : FormatDay(inst->general_in_force))
       << "\n"
       << "file:       " << inst->file << "\n";
  out_ << "provisions:\n";
  for (const auto& p : in.provisions()) {
    std::vector<std::string> g;
    for (int x : p.refusal_grounds()) g.push_back(v1::RefusalGround_Name(static_cast<v1::RefusalGround>(x)));
    out_ << "  " << v1::AssistanceType_Name(p.assistance_type()) << ": "
         << v1::Obligation_Name(p.obligation()) << " (" << absl::StrJoin(p.basis(), ", ")
         << ")" << (g.empty() ? "" : "; grounds " + absl::StrJoin(g, ","))
         << (p.deadline_days() ? absl::StrCat("; ", p.deadline_days(), " days") : "") << "\n";
  }
  int unverified = 0;
  for (const PartyRecord& p : inst->parties) unverified += p.status->unverified();
  out_ << "parties (" << inst->parties.size() << ", " << inst->parties.size() - unverified
       << " verified, " << unverified << " unverified):\n";
  for (const PartyRecord& p : inst->parties) {
    out_ << "  " << p.status->party() << "  signed " << FormatDay(p.signed_on) << ", consent "
         << FormatDay(p.consent) << ", in force " << FormatDay(p.in_force);
    if (p.party_by != kNever) out_ << ", listed as a party by " << FormatDay(p.party_by);
    if (p.bound_until != kNever) out_ << ", until " << FormatDay(p.bound_until);
    for (const auto& r : p.reservations) {
      out_ << "; reservation " << r.entry->id() << " " << FormatDay(r.from)
           << (r.until == kNever ? "" : ".." + FormatDay(r.until));
    }
    for (const auto& d : p.status->declarations()) {
      out_ << "; declaration " << d.id() << " " << d.made()
           << (d.withdrawn().empty() ? "" : ".." + d.withdrawn());
    }
    out_ << "  (" << (p.status->unverified() ? "unverified" : "verified") << ")\n";
    out_ << "      source: " << (p.status->source().empty() ? "-" : p.status->source()) << "\n";
  }
  return kExitOk;
}

}  // namespace

int RunTreatyCli(const std::vector<std::string>& args, const GetEnv& env, std::ostream& out,
                 std::ostream& err) {
  TreatyCli cli(env, out, err);
  return cli.Run(args);
}

}  // namespace comity
