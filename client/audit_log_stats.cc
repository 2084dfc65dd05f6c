// AuditLogStats: what `comity audit stats` and the /stats page compute from
// the audit log's entries. No HTML and no gRPC here.
#include "client/audit_page.h"

#include <algorithm>
#include <utility>

#include "comity/v1/audit.pb.h"

namespace comity {

double AuditLogStats::Percentile(const std::vector<double>& ms, double p) {
  if (ms.empty()) return 0.0;
  return ms[std::min(ms.size() - 1, static_cast<size_t>(p * ms.size()))];
}

double AuditLogStats::AcknowledgementPercentile(double p) const {
  return Percentile(acknowledgement_ms, p);
}

namespace {

// The action of a case step entry; entries written before case_action
// existed say it in their detail ("3: REFUSE -> CASE_REFUSED").
std::string StepAction(const v1::AuditEntry& e) {
  if (e.case_action() != 0 && v1::CaseAction_IsValid(e.case_action())) {
    return v1::CaseAction_Name(static_cast<v1::CaseAction>(e.case_action()));
  }
  absl::string_view d = e.detail();
  size_t colon = d.find(": ");
  size_t arrow = d.find(" ->");
  if (colon == absl::string_view::npos || arrow == absl::string_view::npos || arrow < colon) {
    return "(unknown)";
  }
  return std::string(d.substr(colon + 2, arrow - colon - 2));
}

}  // namespace

void AuditLogStatsBuilder::Add(const std::string& bytes) {
  AuditLogStats& s = stats_;
  ++s.entries;
  v1::AuditEntry e;
  e.ParseFromString(bytes);
  switch (e.type()) {
    case v1::REQUEST_SUBMITTED:
      ++s.sent_by_partner[e.party()];
      submitted_at_[e.request_id()] = e.time_unix_micros();
      started_at_.emplace(e.request_id(), e.time_unix_micros());
      break;
    case v1::REQUEST_RECEIVED:
      ++s.received_by_partner[e.party()];
      started_at_.emplace(e.request_id(), e.time_unix_micros());
      break;
    case v1::ASSESSMENT_MADE:
      ++s.assessments_by_instrument[e.instrument().empty() ? "(none)" : e.instrument()];
      ++s.assessments_by_obligation[v1::Obligation_Name(e.obligation())];
      instrument_.emplace(e.request_id(), e.instrument().empty() ? "(none)" : e.instrument());
      break;
    case v1::CASE_DECIDED:
    case v1::CASE_UPDATED: {
      const std::string action = StepAction(e);
      std::string instrument = e.instrument();
      if (instrument.empty()) {
        auto it = instrument_.find(e.request_id());
        instrument = it != instrument_.end() ? it->second : "(none)";
      }
      ++s.outcomes_by_partner[e.party().empty() ? "(none)" : e.party()][action];
      ++s.outcomes_by_instrument[instrument][action];
      if (action == "REFUSE") {
        for (int g : e.refusal_grounds()) {
          ++s.case_refusals_by_ground[v1::RefusalGround_Name(static_cast<v1::RefusalGround>(g))];
        }
        if (e.refusal_grounds().empty()) ++s.case_refusals_by_ground["(none given)"];
      }
      const int bit = action == "ACCEPT" || action == "REFUSE" ? 1 : action == "RESPOND" ? 2 : 0;
      auto start = started_at_.find(e.request_id());
      int& seen = milestones_[e.request_id()];
      if (bit != 0 && (seen & bit) == 0 && start != started_at_.end()) {
        seen |= bit;
        (bit == 1 ? s.decision_ms : s.response_ms)
            .push_back((e.time_unix_micros() - start->second) / 1000.0);
      }
      break;
    }
    case v1::CASE_ESCALATED:
      ++s.deadlines_missed[e.detail().substr(0, e.detail().find(' '))];
      break;
    case v1::DELIVERY_ACKNOWLEDGED: {
      auto it = submitted_at_.find(e.request_id());
      if (it != submitted_at_.end()) {
        s.acknowledgement_ms.push_back((e.time_unix_micros() - it->second) / 1000.0);
      }
      break;
    }
    case v1::DELIVERY_REFUSED:
    case v1::PEER_REQUEST_REFUSED:
      ++s.refusals_by_reason[e.detail().substr(0, e.detail().find(':'))];
      break;
    default:
      break;
  }
}

AuditLogStats AuditLogStatsBuilder::Finish() {
  std::sort(stats_.acknowledgement_ms.begin(), stats_.acknowledgement_ms.end());
  std::sort(stats_.decision_ms.begin(), stats_.decision_ms.end());
  std::sort(stats_.response_ms.begin(), stats_.response_ms.end());
  submitted_at_.clear();
  started_at_.clear();
  instrument_.clear();
  milestones_.clear();
  return std::move(stats_);
}

AuditLogStats ComputeAuditLogStats(
    const google::protobuf::RepeatedPtrField<std::string>& entries) {
  AuditLogStatsBuilder builder;
  for (const std::string& bytes : entries) builder.Add(bytes);
  return builder.Finish();
}

}  // namespace comity
