#include "server/node/deadline_watch.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "server/core/deadlines.h"
#include "server/node/case_records.h"
#include "server/util/log.h"
#include "server/util/status_macros.h"

namespace comity {
namespace {

constexpr int kBatch = 64;

// The bit of CaseRef::escalated for a deadline kind that is escalated; 0
// for one that is not.
uint32_t EscalationBit(const std::string& kind) {
  if (kind == "ACKNOWLEDGE") return 1;
  if (kind == "DECIDE") return 2;
  return 0;
}

std::string FormatMicros(int64_t micros) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixMicros(micros),
                          absl::UTCTimeZone());
}

}  // namespace

absl::StatusOr<std::vector<v1::CaseDeadline>> DeadlineWatch::Overdue(int limit) {
  std::vector<v1::CaseDeadline> out;
  const absl::Time now = ctx_->Now();
  // Every case whose next deadline has come, from the store's index.
  std::optional<CaseRef> after;
  while (out.size() < static_cast<size_t>(limit)) {
    COMITY_ASSIGN_OR_RETURN(
        std::vector<CaseRef> refs,
        ctx_->store().cases().WithDeadlineBefore(now, after ? &*after : nullptr, kBatch));
    for (const CaseRef& ref : refs) {
      COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> full,
                              ctx_->store().requests().Get(ref.request_id));
      const v1::RequestRecord* r = RowOf(full, ref.direction);
      if (r == nullptr) continue;
      for (v1::CaseDeadline& d :
           CaseDeadlines(*r, ctx_->config().service_levels(), now)) {
        if ((d.overdue() || d.expiring()) && out.size() < static_cast<size_t>(limit)) {
          out.push_back(std::move(d));
        }
      }
    }
    if (refs.size() < static_cast<size_t>(kBatch)) break;
    after = refs.back();
  }
  return out;
}

void DeadlineWatch::Check() {
  absl::MutexLock checking(&check_mu_);
  const absl::Time now = ctx_->Now();
  for (;;) {
    auto due = ctx_->store().cases().Due(now, kBatch);
    if (!due.ok()) {
      LogEvent(LogLevel::kError, "store_error", {{"error", due.status().ToString()}});
      return;
    }
    for (const CaseRef& ref : *due) {
      auto full = ctx_->store().requests().Get(ref.request_id);
      const v1::RequestRecord* r = full.ok() ? RowOf(*full, ref.direction) : nullptr;
      uint32_t escalated = ref.escalated;
      std::vector<v1::CaseDeadline> escalate;
      absl::Time next_check = absl::InfiniteFuture();
      if (r != nullptr) {
        for (v1::CaseDeadline& d : CaseDeadlines(*r, ctx_->config().service_levels(), now)) {
          const uint32_t bit = EscalationBit(d.kind());
          if (!d.overdue() || d.obligation() != v1::BINDING || bit == 0 ||
              (escalated & bit) != 0) {
            continue;
          }
          escalated |= bit;
          escalate.push_back(std::move(d));
        }
        // What is past is dealt with: next, what has not come yet.
        next_check = NextDeadline(*r, ctx_->config().service_levels(), now);
      }
      for (const v1::CaseDeadline& d : escalate) {
        LogEvent(LogLevel::kError, "deadline_missed",
                 {{"request_id", d.request_id()},
                  {"deadline", d.kind()},
                  {"due", FormatMicros(d.due_unix_micros())},
                  {"party", d.party()},
                  {"detail", d.description()}});
      }
      // Escalated once per deadline: the entries and the bits commit together.
      AuditFn audit;
      if (!escalate.empty()) {
        audit = [&](AuditWriter& w) -> absl::Status {
          for (const v1::CaseDeadline& d : escalate) {
            v1::AuditEntry e =
                ctx_->Event(v1::CASE_ESCALATED, "node", d.request_id(), d.party());
            e.set_obligation(d.obligation());
            e.set_detail(absl::StrCat(d.kind(), " overdue since ",
                                      FormatMicros(d.due_unix_micros()), ": ",
                                      d.description()));
            COMITY_RETURN_IF_ERROR(w.Append(&e).status());
          }
          return absl::OkStatus();
        };
      }
      absl::Status st = ctx_->store().cases().MarkDeadlinesChecked(
          ref.request_id, ref.direction, next_check, escalated, audit);
      if (!st.ok()) {
        LogEvent(LogLevel::kError, "audit_error", {{"error", st.ToString()}});
        return;
      }
    }
    if (due->size() < static_cast<size_t>(kBatch)) return;
  }
}

absl::StatusOr<int> DeadlineWatch::Reindex() {
  int changed = 0;
  std::optional<CaseRef> after;
  for (;;) {
    COMITY_ASSIGN_OR_RETURN(
        std::vector<CaseRef> open,
        ctx_->store().cases().Open(after ? &*after : nullptr, kBatch));
    for (const CaseRef& ref : open) {
      COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> full,
                              ctx_->store().requests().Get(ref.request_id));
      const v1::RequestRecord* r = RowOf(full, ref.direction);
      if (r == nullptr) continue;
      const absl::Time next = NextDeadline(*r, ctx_->config().service_levels());
      if (next == ref.next_deadline) continue;
      COMITY_RETURN_IF_ERROR(
          ctx_->store().cases().SetNextDeadline(ref.request_id, ref.direction, next));
      ++changed;
    }
    if (open.size() < static_cast<size_t>(kBatch)) return changed;
    after = open.back();
  }
}

}  // namespace comity
