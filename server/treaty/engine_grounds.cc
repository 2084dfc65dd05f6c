// Steps 6-9 of the decision procedure: the grounds of refusal and
// postponement (with the requested party's reservations), the request's own
// form, deadlines and duties, and the channel.
#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "google/protobuf/message.h"
#include "server/treaty/engine_internal.h"

namespace comity::treaty_internal {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

std::string GroundName(int g) {
  return v1::RefusalGround_Name(static_cast<v1::RefusalGround>(g));
}

// True if the field at `path` of `msg` is present (non-empty, non-zero).
bool HasContent(const Message& msg, const std::vector<const FieldDescriptor*>& path) {
  const Message* m = &msg;
  for (size_t i = 0; i + 1 < path.size(); ++i) {
    if (!m->GetReflection()->HasField(*m, path[i])) return false;
    m = &m->GetReflection()->GetMessage(*m, path[i]);
  }
  const FieldDescriptor* f = path.back();
  const auto* r = m->GetReflection();
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING:
      return !r->GetString(*m, f).empty();
    case FieldDescriptor::CPPTYPE_BOOL:
      return r->GetBool(*m, f);
    case FieldDescriptor::CPPTYPE_MESSAGE:
      return r->HasField(*m, f);
    case FieldDescriptor::CPPTYPE_ENUM:
      return r->GetEnumValue(*m, f) != 0;
    default:
      return r->HasField(*m, f);
  }
}

// "Art 27(9)(e)" -> "27".
std::string ArticleOf(absl::string_view ref) {
  absl::ConsumePrefix(&ref, "Art ");
  size_t end = 0;
  while (end < ref.size() && absl::ascii_isalnum(ref[end])) ++end;
  return std::string(ref.substr(0, end));
}

int Rank(v1::Urgency u) { return u == v1::URGENCY_UNSPECIFIED ? v1::ROUTINE : u; }

// The first rule the request's urgency reaches; nullptr if none.
const v1::ChannelRule* PickChannel(
    const google::protobuf::RepeatedPtrField<v1::ChannelRule>& rules,
    v1::Urgency urgency) {
  for (const v1::ChannelRule& r : rules) {
    if (r.min_urgency() == v1::URGENCY_UNSPECIFIED ||
        Rank(urgency) >= Rank(r.min_urgency())) {
      return &r;
    }
  }
  return nullptr;
}

}  // namespace

// Step 6: refusal and postponement grounds.
void Assessor::CollectGrounds() {
  const InstrumentRecord& inst = *deciding_->inst;
  const v1::Provision& p = *deciding_->provision;
  for (int g : p.refusal_grounds()) grounds_.set(g);
  for (int g : p.postponement_grounds()) postpone_.set(g);
  if (p.uses_general_procedure()) {
    if (proc_ != nullptr && proc_->inst != &inst) {
      Note(absl::StrCat(proc_->inst->proto.id(), " is in force between them, so ",
                        inst.proto.id(), "'s general procedure does not apply; ",
                        proc_->inst->proto.id(), "'s conditions do."));
      for (int g : proc_->provision->refusal_grounds()) grounds_.set(g);
      for (int g : proc_->provision->postponement_grounds()) postpone_.set(g);
      grounds_.set(v1::DOMESTIC_LAW);
    } else if (proc_ == nullptr) {
      general_ = &inst.proto.general_procedure();
      for (int g : general_->refusal_grounds()) grounds_.set(g);
      for (int g : general_->postponement_grounds()) postpone_.set(g);
      for (const std::string& b : general_->basis()) a_.add_basis(Cite(inst, b));
      for (const v1::Duty& d : general_->duties()) {
        a_.add_duties(absl::StrCat(Cite(inst, d.basis()), ": ", d.text()));
      }
      for (const std::string& n : general_->notes()) Note(n);
      if (!general_->basis().empty()) {
        Note(absl::StrCat("No mutual legal assistance instrument is in force between ",
                          from_, " and ", to_, ": ", Cite(inst, general_->basis(0)),
                          " supplies the procedure and grounds."));
      }
    }
  }
  ExcludeGrounds();
  ApplyDualCriminality();
  ApplyReservations();
  RecordGrounds();
}

void Assessor::ExcludeGrounds() {
  // Art 25(4)-style exclusions hold whatever governs: the floor's too.
  for (const Candidate* c : {deciding_, floor_}) {
    if (c == nullptr || !convention_offence_) continue;
    if (c != deciding_ && c->inst == deciding_->inst) continue;
    const v1::Provision& cp = *c->provision;
    for (int g : cp.excluded_for_convention_offences()) {
      if (!grounds_.test(g)) continue;
      grounds_.reset(g);
      Note(absl::StrCat(v1::OffenceCategory_Name(q_.offence), " is an offence of ",
                        c->inst->proto.id(), "'s own categories: ",
                        cp.excluded_basis().empty() ? c->inst->proto.id()
                                                    : Cite(*c->inst, cp.excluded_basis()),
                        " excludes refusal on ", GroundName(g), "."));
    }
  }
  // A ground of postponement is never one of refusal (Art 27(5)).
  for (int g = 1; g < kGroundCount; ++g) {
    if (postpone_.test(g) && grounds_.test(g)) grounds_.reset(g);
  }
}

// Dual criminality: the deciding provision's rule, or the procedure
// instrument's where the convention defers to it (Art 25(5)).
void Assessor::ApplyDualCriminality() {
  const v1::Provision& p = *deciding_->provision;
  const v1::Provision* dc_rule = &p;
  const InstrumentRecord* dc_inst = deciding_->inst;
  if (p.uses_general_procedure() && proc_ != nullptr && proc_->inst != deciding_->inst) {
    dc_rule = proc_->provision;
    dc_inst = proc_->inst;
  }
  bool dc_required =
      dc_rule->dual_criminality_required() || p.dual_criminality_required();
  if (dc_required && !dc_rule->dual_criminality_waived_for().empty() &&
      std::find(dc_rule->dual_criminality_waived_for().begin(),
                dc_rule->dual_criminality_waived_for().end(),
                q_.offence) != dc_rule->dual_criminality_waived_for().end()) {
    const uint32_t min = dc_rule->dual_criminality_waiver_min_months();
    const std::string cite =
        dc_rule->dual_criminality_waiver_basis().empty()
            ? dc_inst->proto.id()
            : Cite(*dc_inst, dc_rule->dual_criminality_waiver_basis());
    if (min == 0 || q_.penalty_months >= min) {
      dc_required = false;
      grounds_.reset(v1::DUAL_CRIMINALITY);
      Note(absl::StrCat(cite, ": dual criminality is not verified for ",
                        v1::OffenceCategory_Name(q_.offence),
                        min > 0 ? absl::StrCat(" punishable in ", from_, " by at least ",
                                               min, " months")
                                : "",
                        "."));
    } else {
      Note(absl::StrCat(cite, ": dual criminality would not be verified if ", from_,
                        " punishes the offence by at least ", min, " months (",
                        q_.penalty_months == 0
                            ? "penalty unknown"
                            : absl::StrCat(q_.penalty_months, " months given"),
                        ")."));
    }
  }
  a_.set_dual_criminality_required(dc_required);
  if (dc_required) {
    if (q_.dual_criminality == v1::DUAL_CRIMINALITY_MET) {
      grounds_.reset(v1::DUAL_CRIMINALITY);
      Note("Dual criminality is a condition and is stated to be met.");
    } else {
      grounds_.set(v1::DUAL_CRIMINALITY);
      Note(q_.dual_criminality == v1::DUAL_CRIMINALITY_NOT_MET
               ? absl::StrCat("Dual criminality is a condition and is not met: ", to_,
                              " may refuse on that ground.")
               : "Dual criminality is a condition and is not known to be met: it stays "
                 "open.");
    }
  } else {
    if (grounds_.test(v1::DUAL_CRIMINALITY) &&
        !dc_rule->dual_criminality_waived_for().empty()) {
      grounds_.reset(v1::DUAL_CRIMINALITY);
    }
    if (!grounds_.test(v1::DUAL_CRIMINALITY)) {
      Note(absl::StrCat("Dual criminality is not a condition of ", a_.basis(0), "."));
    }
  }
}

// Reservations of the requested party in force on the date.
void Assessor::ApplyReservations() {
  const InstrumentRecord& inst = *deciding_->inst;
  const PartyRecord* pt = inst.Party(to_);
  if (pt == nullptr) return;
  for (const HeldReservation& r : pt->reservations) {
    const v1::ReservationEffect& e = r.allowed->effect();
    if (e.removes_route() ||
        std::find(e.assistance_types().begin(), e.assistance_types().end(), type_) ==
            e.assistance_types().end()) {
      continue;
    }
    const std::string cite = Cite(inst, r.entry->id());
    // Made later: an assessment cites nothing after its date.
    if (day_ < r.from) continue;
    if (day_ >= r.until) {
      Note(absl::StrCat(to_, "'s reservation under ", cite, " is not in effect on ",
                        a_.date(), " (held ", FormatDay(r.from), ", withdrawn ",
                        FormatDay(r.until), ")."));
      continue;
    }
    if (e.only_for_non_convention_offences() && convention_offence_) {
      Note(absl::StrCat(to_, "'s reservation under ", cite,
                        " does not apply: ", v1::OffenceCategory_Name(q_.offence),
                        " is an offence of ", inst.proto.id(), "'s own categories."));
      continue;
    }
    a_.add_basis(cite);
    for (int g : e.adds_refusal_grounds()) {
      if (g == v1::DUAL_CRIMINALITY && q_.dual_criminality == v1::DUAL_CRIMINALITY_MET) {
        Note(absl::StrCat(to_, "'s reservation under ", cite,
                          " applies, but dual criminality is stated to be met."));
        continue;
      }
      grounds_.set(g);
      Note(absl::StrCat(to_, "'s reservation under ", cite, " (since ", FormatDay(r.from),
                        ") opens the ground ", GroundName(g), "."));
    }
  }
}

void Assessor::RecordGrounds() {
  const v1::Provision& p = *deciding_->provision;
  for (int g = 1; g < kGroundCount; ++g) {
    if (grounds_.test(g)) a_.add_refusal_grounds(static_cast<v1::RefusalGround>(g));
    if (postpone_.test(g)) a_.add_postponement_grounds(static_cast<v1::RefusalGround>(g));
  }
  if (postpone_.any()) {
    const std::string& pb = !p.postponement_basis().empty() ? p.postponement_basis()
                            : general_ != nullptr ? general_->postponement_basis()
                                                  : std::string();
    Note(absl::StrCat(
        "Execution may be postponed, not refused, on ",
        absl::StrJoin(a_.postponement_grounds(), ", ",
                      [](std::string* out, int g) { out->append(GroundName(g)); }),
        pb.empty() ? "" : absl::StrCat(" (", Cite(*deciding_->inst, pb), ")"), "."));
  }
}

// Step 7: the request's own form.
void Assessor::CheckForm() {
  const InstrumentRecord& inst = *deciding_->inst;
  const v1::Provision& p = *deciding_->provision;
  if (q_.request == nullptr) {
    if (!p.required_contents().empty()) {
      Note(absl::StrCat("The request's contents were not checked against ",
                        Cite(inst, p.required_contents(0).basis()),
                        " (no request given)."));
    }
    return;
  }
  std::vector<std::string> missing;
  for (int i = 0; i < p.required_contents_size(); ++i) {
    if (HasContent(*q_.request, inst.content_paths[deciding_->provision_index][i])) {
      continue;
    }
    const v1::RequiredContent& rc = p.required_contents(i);
    const std::string cite = Cite(inst, rc.basis());
    if (std::find(missing.begin(), missing.end(), cite) == missing.end()) {
      missing.push_back(cite);
    }
    v1::MissingContent* m = a_.add_missing();
    m->set_field(rc.field());
    m->set_basis(cite);
    m->set_description(rc.description());
    Note(absl::StrCat("Missing ", rc.field(), " (", cite,
                      rc.description().empty() ? "" : ": " + rc.description(), ")."));
  }
  if (!missing.empty()) {
    a_.set_obligation(v1::INVALID);
    a_.clear_basis();
    for (auto& m : missing) a_.add_basis(m);
    Note(absl::StrCat("The request does not meet ", inst.proto.id(),
                      "'s own conditions: INVALID until it is completed."));
  }
}

// Step 8: deadlines, duties, the provision's own notes. The deciding
// article's deadline, else the procedure instrument's.
void Assessor::AddDeadlinesAndDuties() {
  const InstrumentRecord& inst = *deciding_->inst;
  const v1::Provision& p = *deciding_->provision;
  const v1::Provision* dl = &p;
  const InstrumentRecord* dl_inst = &inst;
  if (p.deadline_days() == 0 && proc_ != nullptr && proc_->inst != &inst) {
    dl = proc_->provision;
    dl_inst = proc_->inst;
  }
  if (dl->deadline_days() > 0) {
    a_.set_deadline_days(dl->deadline_days());
    Note(absl::StrCat(dl->deadline_basis().empty() ? dl_inst->proto.id()
                                                   : Cite(*dl_inst, dl->deadline_basis()),
                      ": ", dl->deadline_days(), " days."));
  }
  if (q_.urgency == v1::EMERGENCY && dl->emergency_deadline_hours() > 0) {
    a_.set_deadline_hours(dl->emergency_deadline_hours());
    Note(absl::StrCat(dl->emergency_deadline_basis().empty()
                          ? dl_inst->proto.id()
                          : Cite(*dl_inst, dl->emergency_deadline_basis()),
                      ": ", dl->emergency_deadline_hours(), " hours in an emergency."));
  }
  for (const v1::Duty& d : p.duties()) {
    a_.add_duties(absl::StrCat(Cite(inst, d.basis()), ": ", d.text()));
  }
  for (const std::string& n : p.notes()) Note(n);
  if (proc_ != nullptr && proc_->inst != &inst) {
    for (const v1::Duty& d : proc_->provision->duties()) {
      a_.add_duties(absl::StrCat(Cite(*proc_->inst, d.basis()), ": ", d.text()));
    }
  }
}

// Step 9: the channel. The deciding article's own (Art 35 for Art 29),
// else the procedure instrument's, else the general procedure's; the
// requested party's declaration on that instrument can fix it (FR under
// Art 27: the diplomatic channel, even when urgent).
void Assessor::ChooseChannel() {
  const InstrumentRecord& inst = *deciding_->inst;
  const v1::ChannelRule* channel =
      PickChannel(deciding_->provision->channels(), q_.urgency);
  const InstrumentRecord* channel_inst = &inst;
  if (channel == nullptr && proc_ != nullptr) channel = ProcedureChannel(&channel_inst);
  if (channel == nullptr && general_ != nullptr) {
    channel = PickChannel(general_->channels(), q_.urgency);
  }
  if (channel == nullptr && channel_inst == &inst) {
    channel = PickChannel(inst.proto.channels(), q_.urgency);
  }
  if (channel != nullptr) {
    a_.set_channel(channel->channel());
    if (!channel->basis().empty()) {
      a_.set_channel_basis(Cite(*channel_inst, channel->basis()));
    }
    a_.set_authority(channel->authority());
    ApplyChannelDeclarations(*channel_inst, *channel);
  }
  if (a_.channel() != v1::CHANNEL_UNSPECIFIED) {
    Note(absl::StrCat("Channel: ", v1::Channel_Name(a_.channel()),
                      a_.channel_basis().empty() ? "" : " (" + a_.channel_basis() + ")",
                      a_.authority().empty() ? "" : ": " + a_.authority(), "."));
  }
}

const v1::ChannelRule* Assessor::ProcedureChannel(
    const InstrumentRecord** channel_inst) const {
  // An instrument that supplements the procedure instrument and sets
  // channels amends its channels (ETS 182 Art 4, EU MLA 2000 Art 6).
  for (const Candidate& c : kept_) {
    const std::string* why = SupplementReason(c.inst);
    if (why == nullptr || &c == proc_) continue;
    bool of_proc = false;
    for (const v1::Precedence& pr : c.inst->proto.precedence()) {
      of_proc |=
          pr.effect() == v1::SUPPLEMENTS && pr.instrument() == proc_->inst->proto.id();
    }
    if (!of_proc) continue;
    const v1::ChannelRule* channel = PickChannel(c.provision->channels(), q_.urgency);
    if (channel == nullptr) channel = PickChannel(c.inst->proto.channels(), q_.urgency);
    if (channel != nullptr) {
      *channel_inst = c.inst;
      return channel;
    }
  }
  *channel_inst = proc_->inst;
  const v1::ChannelRule* channel = PickChannel(proc_->provision->channels(), q_.urgency);
  if (channel == nullptr) {
    channel = PickChannel(proc_->inst->proto.channels(), q_.urgency);
  }
  return channel;
}

// The requested party's declarations on `channel_inst` that fix the
// channel of the article `channel` cites, or of the general procedure.
void Assessor::ApplyChannelDeclarations(const InstrumentRecord& channel_inst,
                                        const v1::ChannelRule& channel) {
  const PartyRecord* pt = channel_inst.Party(to_);
  if (pt == nullptr) return;
  const std::string channel_article = ArticleOf(channel.basis());
  for (const HeldReservation& d : pt->declarations) {
    if (day_ < d.from || day_ >= d.until) continue;
    const v1::Channel fixed = d.entry->channel() != v1::CHANNEL_UNSPECIFIED
                                  ? d.entry->channel()
                                  : d.allowed->effect().channel();
    const std::string article = ArticleOf(d.entry->id());
    if (fixed == v1::CHANNEL_UNSPECIFIED ||
        (article != channel_article &&
         (general_ == nullptr || article != ArticleOf(general_->basis(0))))) {
      continue;
    }
    // 27(9)(e) concerns the urgent and direct channels only.
    if (fixed == v1::CENTRAL_AUTHORITY && channel.channel() != v1::DIRECT_JUDICIAL) {
      continue;
    }
    a_.set_channel(fixed);
    a_.set_channel_basis(Cite(channel_inst, d.entry->id()));
    a_.set_authority(d.entry->text());
    Note(absl::StrCat(to_, "'s declaration under ", Cite(channel_inst, d.entry->id()),
                      " (since ", FormatDay(d.from),
                      d.entry->unverified() ? ", unverified" : "",
                      "): ", d.entry->text()));
  }
}

}  // namespace comity::treaty_internal
