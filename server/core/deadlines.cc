#include "server/core/deadlines.h"

#include "absl/strings/str_cat.h"
#include "comity/v1/case.pb.h"
#include "comity/v1/envelope.pb.h"
#include "comity/v1/request.pb.h"

namespace comity {
namespace {

bool Decided(v1::CaseState s) {
  return s == v1::CASE_ACCEPTED || s == v1::CASE_PARTLY_EXECUTED || s == v1::CASE_EXECUTED ||
         s == v1::CASE_REFUSED || s == v1::CASE_POSTPONED || s == v1::CASE_WITHDRAWN ||
         s == v1::CASE_CLOSED;
}

}  // namespace

std::vector<v1::CaseDeadline> CaseDeadlines(const v1::RequestRecord& record,
                                            const v1::ServiceLevels& levels, absl::Time now) {
  std::vector<v1::CaseDeadline> out;
  const v1::CaseState state = record.case_state();
  if (state == v1::CASE_STATE_UNSPECIFIED || state == v1::CASE_CLOSED ||
      state == v1::CASE_WITHDRAWN) {
    return out;
  }
  v1::RequestBody body;
  v1::Receipt receipt;
  if (!body.ParseFromString(record.request().payload()) ||
      !receipt.ParseFromString(record.receipt().payload())) {
    return out;
  }
  const absl::Time received = absl::FromUnixSeconds(receipt.received_at().seconds()) +
                              absl::Nanoseconds(receipt.received_at().nanos());
  const v1::Assessment& assessment = receipt.receiver_assessment();
  auto add = [&](const char* kind, absl::Time due, bool met, std::string what) {
    if (met) return;
    v1::CaseDeadline d;
    d.set_request_id(body.id());
    d.set_direction(record.direction());
    d.set_kind(kind);
    d.set_due_unix_micros(absl::ToUnixMicros(due));
    d.set_overdue(now > due);
    d.set_party(body.requested_party());
    d.set_description(std::move(what));
    d.set_obligation(assessment.obligation());
    out.push_back(std::move(d));
  };

  const absl::Duration ack =
      absl::Hours(body.urgency() == v1::EMERGENCY ? levels.emergency_acknowledge_hours()
                  : body.urgency() == v1::URGENT  ? levels.urgent_acknowledge_hours()
                                                  : levels.acknowledge_hours());
  const absl::Duration decide =
      absl::Hours(24) * (body.urgency() == v1::ROUTINE || body.urgency() == 0
                             ? levels.decide_days()
                             : levels.urgent_decide_days());
  add("ACKNOWLEDGE", received + ack, state != v1::CASE_DELIVERED,
      absl::StrCat(body.requested_party(), " to acknowledge within ", absl::FormatDuration(ack),
                   " of receipt (", v1::Urgency_Name(body.urgency()), ")"));
  add("DECIDE", received + decide, Decided(state),
      absl::StrCat(body.requested_party(), " to accept, refuse or postpone within ",
                   absl::FormatDuration(decide), " of receipt"));

  // A preservation's term runs from its acceptance (ETS185 Art 29(7)).
  if (body.assistance_type() == v1::PRESERVATION && assessment.deadline_days() > 0) {
    for (const v1::SignedEnvelope& env : record.transitions()) {
      v1::Transition t;
      if (!t.ParseFromString(env.payload()) || t.action() != v1::ACCEPT) continue;
      const absl::Time until = absl::FromUnixMicros(t.time_unix_micros()) +
                               absl::Hours(24) * assessment.deadline_days();
      const absl::Time warn = until - absl::Hours(24) * levels.preservation_warning_days();
      if (now >= warn && state != v1::CASE_REFUSED) {
        v1::CaseDeadline d;
        d.set_request_id(body.id());
        d.set_direction(record.direction());
        d.set_kind("PRESERVATION_EXPIRY");
        d.set_due_unix_micros(absl::ToUnixMicros(until));
        d.set_overdue(now > until);
        d.set_expiring(true);
        d.set_party(body.requesting_party());
        d.set_description(absl::StrCat(
            "preservation kept at least ", assessment.deadline_days(), " days (",
            assessment.instrument(), " Art 29(7)): follow up with a mutual assistance request "
                                     "or ask for an extension"));
        d.set_obligation(assessment.obligation());
        out.push_back(std::move(d));
      }
      break;
    }
  }
  return out;
}

}  // namespace comity
