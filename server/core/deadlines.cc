#include "server/core/deadlines.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "google/protobuf/arena.h"
#include "comity/v1/case.pb.h"
#include "comity/v1/envelope.pb.h"
#include "comity/v1/request.pb.h"
#include "server/core/envelope.h"

namespace comity {
namespace {

bool Decided(v1::CaseState s) {
  return s == v1::CASE_ACCEPTED || s == v1::CASE_PARTLY_EXECUTED || s == v1::CASE_EXECUTED ||
         s == v1::CASE_REFUSED || s == v1::CASE_POSTPONED || s == v1::CASE_WITHDRAWN ||
         s == v1::CASE_CLOSED;
}

}  // namespace

namespace {

// One deadline of a case, met or not.
struct Deadline {
  v1::CaseDeadline d;  // Without overdue/expiring, set by the caller.
  bool met = false;
  absl::Time look_from;  // When it starts to matter (its due time, or the warning).
};

// No deadlines run: no case yet, or it has ended.
bool NoneRun(const v1::RequestRecord& record) {
  const v1::CaseState state = record.case_state();
  return state == v1::CASE_STATE_UNSPECIFIED || state == v1::CASE_CLOSED ||
         state == v1::CASE_WITHDRAWN;
}

std::vector<Deadline> AllDeadlines(const v1::RequestRecord& record, const v1::RequestBody& body,
                                   const v1::Receipt& receipt,
                                   const v1::ServiceLevels& levels) {
  std::vector<Deadline> out;
  const v1::CaseState state = record.case_state();
  if (NoneRun(record)) return out;
  const absl::Time received = absl::FromUnixSeconds(receipt.received_at().seconds()) +
                              absl::Nanoseconds(receipt.received_at().nanos());
  const v1::Assessment& assessment = receipt.receiver_assessment();
  auto add = [&](const char* kind, absl::Time due, bool met, std::string what,
                 const std::string& party, absl::Time look_from) {
    Deadline x;
    x.d.set_request_id(body.id());
    x.d.set_direction(record.direction());
    x.d.set_kind(kind);
    x.d.set_due_unix_micros(absl::ToUnixMicros(due));
    x.d.set_party(party);
    x.d.set_description(std::move(what));
    x.d.set_obligation(assessment.obligation());
    x.met = met;
    x.look_from = look_from;
    out.push_back(std::move(x));
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
                   " of receipt (", v1::Urgency_Name(body.urgency()), ")"),
      body.requested_party(), received + ack);
  add("DECIDE", received + decide, Decided(state),
      absl::StrCat(body.requested_party(), " to accept, refuse or postpone within ",
                   absl::FormatDuration(decide), " of receipt"),
      body.requested_party(), received + decide);

  // A preservation's term runs from its acceptance (ETS185 Art 29(7)).
  if (body.assistance_type() == v1::PRESERVATION && assessment.deadline_days() > 0 &&
      state != v1::CASE_REFUSED) {
    for (const v1::SignedEnvelope& env : record.transitions()) {
      v1::Transition t;
      if (!t.ParseFromString(env.payload()) || t.action() != v1::ACCEPT) continue;
      const absl::Time until = absl::FromUnixMicros(t.time_unix_micros()) +
                               absl::Hours(24) * assessment.deadline_days();
      const absl::Time warn = until - absl::Hours(24) * levels.preservation_warning_days();
      add("PRESERVATION_EXPIRY", until, false,
          absl::StrCat("preservation kept at least ", assessment.deadline_days(), " days (",
                       assessment.instrument(),
                       " Art 29(7)): follow up with a mutual assistance request "
                       "or ask for an extension"),
          body.requesting_party(), warn);
      break;
    }
  }
  return out;
}

// The same, parsing the record's body and receipt.
std::vector<Deadline> AllDeadlines(const v1::RequestRecord& record,
                                   const v1::ServiceLevels& levels) {
  if (NoneRun(record)) return {};
  // Parsed on an arena that starts on the stack: a body and a receipt are
  // a few hundred small allocations otherwise, for a few fields read.
  alignas(8) char block[16384];
  google::protobuf::ArenaOptions options;
  options.initial_block = block;
  options.initial_block_size = sizeof(block);
  google::protobuf::Arena arena(options);
  auto* body = google::protobuf::Arena::CreateMessage<v1::RequestBody>(&arena);
  auto* receipt = google::protobuf::Arena::CreateMessage<v1::Receipt>(&arena);
  if (!body->ParseFromString(record.request().payload()) ||
      !ParseReceipt(record.receipt(), receipt)) {
    return {};
  }
  return AllDeadlines(record, *body, *receipt, levels);
}

std::vector<v1::CaseDeadline> EveryDeadlineOf(std::vector<Deadline> all, absl::Time now) {
  std::vector<v1::CaseDeadline> out;
  for (Deadline& x : all) {
    const absl::Time due = absl::FromUnixMicros(x.d.due_unix_micros());
    x.d.set_met(x.met);
    x.d.set_overdue(!x.met && now > due);
    x.d.set_expiring(!x.met && x.d.kind() == "PRESERVATION_EXPIRY" && now >= x.look_from);
    out.push_back(std::move(x.d));
  }
  return out;
}

absl::Time NextDeadlineOf(const std::vector<Deadline>& all, absl::Time after) {
  absl::Time next = absl::InfiniteFuture();
  for (const Deadline& x : all) {
    if (!x.met && x.look_from > after) next = std::min(next, x.look_from);
  }
  return next;
}

}  // namespace

std::vector<v1::CaseDeadline> CaseDeadlines(const v1::RequestRecord& record,
                                            const v1::ServiceLevels& levels, absl::Time now) {
  std::vector<v1::CaseDeadline> out;
  for (Deadline& x : AllDeadlines(record, levels)) {
    if (x.met) continue;
    const absl::Time due = absl::FromUnixMicros(x.d.due_unix_micros());
    const bool expiry = x.d.kind() == "PRESERVATION_EXPIRY";
    if (expiry && now < x.look_from) continue;
    x.d.set_overdue(now > due);
    x.d.set_expiring(expiry);
    out.push_back(std::move(x.d));
  }
  return out;
}

std::vector<v1::CaseDeadline> EveryDeadline(const v1::RequestRecord& record,
                                            const v1::ServiceLevels& levels, absl::Time now) {
  return EveryDeadlineOf(AllDeadlines(record, levels), now);
}

std::vector<v1::CaseDeadline> EveryDeadline(const v1::RequestRecord& record,
                                            const v1::RequestBody& body,
                                            const v1::Receipt& receipt,
                                            const v1::ServiceLevels& levels, absl::Time now) {
  return EveryDeadlineOf(AllDeadlines(record, body, receipt, levels), now);
}

absl::Time NextDeadline(const v1::RequestRecord& record, const v1::ServiceLevels& levels,
                        absl::Time after) {
  return NextDeadlineOf(AllDeadlines(record, levels), after);
}

absl::Time NextDeadline(const v1::RequestRecord& record, const v1::RequestBody& body,
                        const v1::Receipt& receipt, const v1::ServiceLevels& levels,
                        absl::Time after) {
  return NextDeadlineOf(AllDeadlines(record, body, receipt, levels), after);
}

}  // namespace comity
