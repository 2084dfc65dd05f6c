#include "server/node/deadline_watch.h"

#include <algorithm>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
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

// A page token of Overdue: the sort key of the page's last case, "d1:"
// next deadline (unix us), direction, request id.
std::string EncodeOverdueToken(const CaseRef& last) {
  return absl::StrCat("d1:", absl::ToUnixMicros(last.next_deadline), ":",
                      static_cast<int>(last.direction), ":", last.request_id);
}

absl::StatusOr<CaseRef> DecodeOverdueToken(const std::string& token) {
  std::vector<std::string> parts = absl::StrSplit(token, absl::MaxSplits(':', 3));
  int64_t due_us = 0;
  int direction = 0;
  if (parts.size() != 4 || parts[0] != "d1" || !absl::SimpleAtoi(parts[1], &due_us) ||
      !absl::SimpleAtoi(parts[2], &direction) || !v1::Direction_IsValid(direction) ||
      parts[3].empty() || parts[3].size() > 128) {
    return absl::InvalidArgumentError(
        "not a page token of this node's overdue list: pass the next_page_token a "
        "previous "
        "page returned");
  }
  CaseRef ref;
  ref.next_deadline = absl::FromUnixMicros(due_us);
  ref.direction = static_cast<v1::Direction>(direction);
  ref.request_id = parts[3];
  return ref;
}

std::string FormatMicros(int64_t micros) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixMicros(micros),
                          absl::UTCTimeZone());
}

}  // namespace

absl::StatusOr<OverduePage> DeadlineWatch::Overdue(int limit,
                                                   const std::string& page_token,
                                                   size_t max_bytes) {
  limit = limit <= 0 ? kMaxOverduePage : std::min(limit, kMaxOverduePage);
  std::optional<CaseRef> after;
  if (!page_token.empty()) {
    COMITY_ASSIGN_OR_RETURN(after, DecodeOverdueToken(page_token));
  }
  OverduePage page;
  const absl::Time now = ctx_->Now();
  size_t bytes = 0;
  int cases = 0;
  // Every case whose next deadline has come, from the store's index.
  for (;;) {
    const int batch =
        std::min(kBatch, limit - cases + 1);  // One more: is there a next page?
    COMITY_ASSIGN_OR_RETURN(
        std::vector<CaseRef> refs,
        ctx_->store().cases().WithDeadlineBefore(now, after ? &*after : nullptr, batch));
    for (const CaseRef& ref : refs) {
      if (cases == limit) {
        page.next_page_token = EncodeOverdueToken(*after);
        return page;
      }
      COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> full,
                              ctx_->store().requests().Get(ref.request_id));
      const v1::RequestRecord* r = RowOf(full, ref.direction);
      std::vector<v1::CaseDeadline> late;
      size_t size = 0;
      if (r != nullptr) {
        for (v1::CaseDeadline& d :
             CaseDeadlines(*r, ctx_->config().service_levels(), now)) {
          if (!d.overdue() && !d.expiring()) continue;
          size += d.ByteSizeLong();
          late.push_back(std::move(d));
        }
      }
      if (max_bytes > 0 && !page.deadlines.empty() && bytes + size > max_bytes) {
        page.next_page_token = EncodeOverdueToken(*after);
        return page;
      }
      bytes += size;
      for (v1::CaseDeadline& d : late) page.deadlines.push_back(std::move(d));
      ++cases;
      after = ref;
    }
    if (refs.size() < static_cast<size_t>(batch)) return page;
  }
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
