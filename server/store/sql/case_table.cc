// CaseStore in SQL: the transitions table, each case's deadline columns in
// requests, and the evidence table (docs/storage.md).
#include "absl/strings/str_cat.h"
#include "server/store/sql/rows.h"
#include "server/store/sql/sql_store.h"
#include "server/util/status_macros.h"

namespace comity::sql {
namespace {

absl::StatusOr<std::vector<CaseRef>> ReadCaseRefs(Session& s, absl::string_view sql,
                                                  const Params& p) {
  std::vector<CaseRef> out;
  COMITY_RETURN_IF_ERROR(s.Query(sql, p, [&](const Row& row) {
    CaseRef c;
    c.request_id = row.Bytes(0);
    c.direction = static_cast<v1::Direction>(row.Int(1));
    c.next_deadline = TimeOrFuture(row, 2);
    c.escalated = static_cast<uint32_t>(row.Int(3));
    out.push_back(std::move(c));
    return absl::OkStatus();
  }));
  return out;
}

#define COMITY_EVIDENCE_COLUMNS \
  "e.request_id, r.requested_party, e.sha256, e.name, e.size, e.attempts, e.last_error, " \
  "e.next_attempt_at_us"

absl::StatusOr<std::vector<PendingEvidence>> ReadEvidence(Session& s,
                                                          absl::string_view sql,
                                                          const Params& p) {
  std::vector<PendingEvidence> out;
  COMITY_RETURN_IF_ERROR(s.Query(sql, p, [&](const Row& row) {
    PendingEvidence e;
    e.request_id = row.Bytes(0);
    e.peer = row.Bytes(1);
    e.sha256 = row.Bytes(2);
    e.name = row.Bytes(3);
    e.size = static_cast<uint64_t>(row.Int(4));
    e.attempts = static_cast<uint32_t>(row.Int(5));
    e.last_error = row.Bytes(6);
    e.next_attempt_at = TimeOrFuture(row, 7);
    out.push_back(std::move(e));
    return absl::OkStatus();
  }));
  return out;
}

}  // namespace

absl::Status SqlCaseStore::AppendTransition(const std::string& request_id,
                                            v1::Direction row, const v1::Transition& t,
                                            const v1::SignedEnvelope& signed_transition,
                                            bool outbound, absl::Time now,
                                            absl::Time next_deadline,
                                            const AuditFn& audit) {
  return db_->Write(audit != nullptr, [&](Session& s, AuditWriter& w) -> absl::Status {
    // The row lock orders concurrent steps of one case across replicas.
    bool found = false;
    int64_t state = 0;
    COMITY_RETURN_IF_ERROR(
        s.Query("SELECT case_state FROM requests WHERE request_id = $1 AND direction = "
                "$2 {for_update}",
                Params().Text(request_id).Int(row), [&](const Row& r) {
                  state = r.Int(0);
                  found = true;
                  return absl::OkStatus();
                }));
    if (!found) {
      return absl::NotFoundError(
          absl::StrCat("no request ", request_id, " on this node"));
    }
    COMITY_ASSIGN_OR_RETURN(
        int64_t last, QueryInt(s,
                               "SELECT COALESCE(MAX(sequence), 0) FROM transitions WHERE "
                               "request_id = $1",
                               Params().Text(request_id)));
    if (static_cast<int64_t>(t.sequence()) != last + 1 || state != t.from_state()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "transition ", t.sequence(), " (", v1::CaseState_Name(t.from_state()), " -> ",
          v1::CaseState_Name(t.to_state()),
          ") does not follow the case as stored here: step ", last, ", state ",
          v1::CaseState_Name(static_cast<v1::CaseState>(state))));
    }
    Params ins;
    ins.Text(request_id).Int(t.sequence()).Blob(signed_transition.SerializeAsString());
    ins.Int(outbound ? 1 : 0);
    if (outbound) {
      ins.Int(ToMicros(now));
    } else {
      ins.Null();
    }
    COMITY_RETURN_IF_ERROR(
        s.Exec("INSERT INTO transitions (request_id, sequence, envelope, "
               "outbound, next_attempt_at_us) VALUES ($1, $2, $3, $4, $5)",
               ins)
            .status());
    COMITY_RETURN_IF_ERROR(s.Exec("UPDATE requests SET case_state = $1, updated_at_us = "
                                  "$2, next_deadline_us = $3, next_check_us = $3 "
                                  "WHERE request_id = $4 AND direction = $5",
                                  Params()
                                      .Int(t.to_state())
                                      .Int(ToMicros(now))
                                      .TimeOrNull(next_deadline)
                                      .Text(request_id)
                                      .Int(row))
                               .status());
    if (row == v1::OUTGOING) {
      // What the requested party now offers this node to fetch.
      for (const v1::EvidenceFile& f : t.evidence()) {
        COMITY_RETURN_IF_ERROR(
            s.Exec("INSERT INTO evidence (request_id, sha256, name, size, "
                   "next_attempt_at_us, "
                   "listed_at_us) VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT DO NOTHING",
                   Params()
                       .Text(request_id)
                       .Blob(f.sha256())
                       .Text(f.name())
                       .Int(static_cast<int64_t>(f.size()))
                       .Int(ToMicros(now)))
                .status());
      }
      if (t.accepted_conditions_size() > 0) {
        COMITY_RETURN_IF_ERROR(
            s.Exec(
                 "UPDATE evidence SET next_attempt_at_us = $1 WHERE request_id = $2 AND "
                 "held = 0",
                 Params().Int(ToMicros(now)).Text(request_id))
                .status());
      }
    }
    return audit ? audit(w) : absl::OkStatus();
  });
}

absl::StatusOr<std::vector<CaseRef>> SqlCaseStore::Due(absl::Time before, int limit) {
  return Fetch(db_, false, &ReadCaseRefs,
               "SELECT request_id, direction, next_deadline_us, escalated FROM requests WHERE "
               "next_check_us IS NOT NULL AND next_check_us <= $1 ORDER BY next_check_us "
               "LIMIT $2",
               Params().Int(ToMicros(before)).Int(limit));
}

absl::StatusOr<std::vector<CaseRef>> SqlCaseStore::WithDeadlineBefore(
    absl::Time before, const CaseRef* after, int limit) {
  Params p;
  p.Int(ToMicros(before));
  std::string sql =
      "SELECT request_id, direction, next_deadline_us, escalated FROM requests WHERE "
      "next_deadline_us IS NOT NULL AND next_deadline_us <= $1";
  if (after != nullptr) {
    p.Int(ToMicros(after->next_deadline)).Text(after->request_id).Int(after->direction);
    sql +=
        " AND (next_deadline_us > $2 OR (next_deadline_us = $2 AND (request_id "
        "{collate_c} > $3 "
        "OR (request_id = $3 AND direction > $4))))";
  }
  p.Int(limit);
  absl::StrAppend(&sql,
                  " ORDER BY next_deadline_us, request_id {collate_c}, direction LIMIT $",
                  p.size());
  return Fetch(db_, false, &ReadCaseRefs, sql, p);
}

absl::Status SqlCaseStore::MarkDeadlinesChecked(const std::string& request_id,
                                                v1::Direction direction, absl::Time next_check,
                                                uint32_t escalated, const AuditFn& audit) {
  return db_->Write(audit != nullptr, [&](Session& s, AuditWriter& w) -> absl::Status {
    COMITY_RETURN_IF_ERROR(
        s.Exec("UPDATE requests SET next_check_us = $1, escalated = $2 WHERE request_id = $3 "
               "AND direction = $4",
               Params()
                   .TimeOrNull(next_check)
                   .Int(escalated)
                   .Text(request_id)
                   .Int(direction))
            .status());
    return audit ? audit(w) : absl::OkStatus();
  });
}

absl::StatusOr<std::vector<CaseRef>> SqlCaseStore::Open(const CaseRef* after, int limit) {
  Params p;
  p.Int(v1::CASE_STATE_UNSPECIFIED).Int(v1::CASE_CLOSED).Int(v1::CASE_WITHDRAWN);
  std::string sql =
      "SELECT request_id, direction, next_deadline_us, escalated FROM requests WHERE "
      "case_state NOT IN ($1, $2, $3)";
  if (after != nullptr) {
    p.Text(after->request_id).Int(after->direction);
    sql += " AND (request_id {collate_c} > $4 OR (request_id = $4 AND direction > $5))";
  }
  p.Int(limit);
  absl::StrAppend(&sql, " ORDER BY request_id {collate_c}, direction LIMIT $", p.size());
  return Fetch(db_, false, &ReadCaseRefs, sql, p);
}

absl::Status SqlCaseStore::SetNextDeadline(const std::string& request_id,
                                           v1::Direction direction,
                                           absl::Time next_deadline) {
  return db_->Write(false, [&](Session& s, AuditWriter&) {
    return s
        .Exec(
            "UPDATE requests SET next_deadline_us = $1, next_check_us = $1 WHERE "
            "request_id = $2 AND "
            "direction = $3",
            Params().TimeOrNull(next_deadline).Text(request_id).Int(direction))
        .status();
  });
}

absl::StatusOr<std::vector<PendingEvidence>> SqlCaseStore::DueEvidence(
    const std::string& peer, absl::Time now, int limit, absl::Time latest) {
  return Fetch(
      db_, false, &ReadEvidence,
      "SELECT " COMITY_EVIDENCE_COLUMNS
      " FROM evidence e JOIN requests r ON r.request_id = e.request_id AND "
      "r.direction = 1 WHERE e.held = 0 AND (e.next_attempt_at_us <= $1 OR "
      "e.next_attempt_at_us > $4) AND ($2 = '' OR r.requested_party = $2) ORDER BY "
      "e.next_attempt_at_us, e.listed_at_us LIMIT $3",
      Params().Int(ToMicros(now)).Text(peer).Int(limit).Int(ToMicros(latest)));
}

absl::StatusOr<std::vector<PendingEvidence>> SqlCaseStore::PendingEvidenceOf(
    const std::string& request_id) {
  return Fetch(
      db_, false, &ReadEvidence,
      "SELECT " COMITY_EVIDENCE_COLUMNS
      " FROM evidence e JOIN requests r ON r.request_id = e.request_id AND "
      "r.direction = 1 WHERE e.held = 0 AND e.request_id = $1 ORDER BY e.listed_at_us, "
      "e.name",
      Params().Text(request_id));
}

absl::StatusOr<std::vector<v1::SignedEnvelope>> SqlCaseStore::StepAcknowledgements(
    const std::string& request_id) {
  std::vector<v1::SignedEnvelope> out;
  COMITY_RETURN_IF_ERROR(db_->Read([&](Session& s) {
    return s.Query(
        "SELECT ack FROM transitions WHERE request_id = $1 AND ack IS NOT NULL "
        "ORDER BY sequence",
        Params().Text(request_id), [&](const Row& row) -> absl::Status {
          if (row.Bytes(0).empty()) return absl::OkStatus();
          if (!out.emplace_back().ParseFromString(row.Bytes(0))) {
            return absl::DataLossError(absl::StrCat(
                "a stored acknowledgement of request ", request_id, " does not parse"));
          }
          return absl::OkStatus();
        });
  }));
  return out;
}

absl::Status SqlCaseStore::MarkEvidenceHeld(const std::string& request_id,
                                            const std::string& sha256,
                                            const AuditFn& audit) {
  return db_->Write(audit != nullptr, [&](Session& s, AuditWriter& w) -> absl::Status {
    COMITY_ASSIGN_OR_RETURN(
        int64_t changed,
        s.Exec("UPDATE evidence SET held = 1, last_error = '', next_attempt_at_us = NULL "
               "WHERE request_id = $1 AND sha256 = $2 AND held = 0",
               Params().Text(request_id).Blob(sha256)));
    if (changed == 0) return absl::OkStatus();  // Already held: audited then.
    return audit ? audit(w) : absl::OkStatus();
  });
}

absl::Status SqlCaseStore::MarkEvidenceDeferred(const std::string& request_id,
                                                const std::string& sha256,
                                                const std::string& error,
                                                bool count_attempt,
                                                absl::Time next_attempt_at) {
  return db_->Write(false, [&](Session& s, AuditWriter&) {
    return s
        .Exec(
            "UPDATE evidence SET attempts = attempts + $1, last_error = $2, "
            "next_attempt_at_us = $3 WHERE request_id = $4 AND sha256 = $5 AND held = 0",
            Params()
                .Int(count_attempt ? 1 : 0)
                .Text(error)
                .TimeOrNull(next_attempt_at)
                .Text(request_id)
                .Blob(sha256))
        .status();
  });
}

absl::StatusOr<std::map<std::string, std::pair<int, int>>>
SqlCaseStore::PendingEvidenceCounts(uint32_t given_up_after) {
  std::map<std::string, std::pair<int, int>> out;
  COMITY_RETURN_IF_ERROR(db_->Read([&](Session& s) {
    return s.Query(
        "SELECT r.requested_party, COUNT(*), SUM(CASE WHEN e.attempts >= $1 THEN 1 ELSE 0 "
        "END) FROM evidence e JOIN requests r ON r.request_id = e.request_id AND "
        "r.direction = 1 WHERE e.held = 0 GROUP BY r.requested_party",
        Params().Int(given_up_after), [&](const Row& row) {
          out[row.Bytes(0)] = {static_cast<int>(row.Int(1)), static_cast<int>(row.Int(2))};
          return absl::OkStatus();
        });
  }));
  return out;
}

absl::StatusOr<int> SqlCaseStore::RetryEvidence(const std::string& request_id,
                                                absl::Time now) {
  int64_t changed = 0;
  COMITY_RETURN_IF_ERROR(db_->Write(false, [&](Session& s, AuditWriter&) -> absl::Status {
    COMITY_ASSIGN_OR_RETURN(
        changed, s.Exec("UPDATE evidence SET attempts = 0, next_attempt_at_us = $1 "
                        "WHERE request_id = $2 AND held = 0",
                        Params().Int(ToMicros(now)).Text(request_id)));
    return absl::OkStatus();
  }));
  return static_cast<int>(changed);
}

absl::Status SqlCaseStore::StageEvidence(const StagedEvidence& file, absl::Time now,
                                         const AuditFn& audit) {
  return db_->Write(audit != nullptr, [&](Session& s, AuditWriter& w) -> absl::Status {
    COMITY_RETURN_IF_ERROR(
        s.Exec("INSERT INTO staged_evidence (request_id, sha256, name, size, staged_by, "
               "staged_at_us) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (request_id, "
               "sha256) DO UPDATE SET name = excluded.name, staged_by = excluded.staged_by",
               Params()
                   .Text(file.request_id)
                   .Blob(file.sha256)
                   .Text(file.name)
                   .Int(static_cast<int64_t>(file.size))
                   .Text(file.staged_by)
                   .Int(ToMicros(now)))
            .status());
    return audit ? audit(w) : absl::OkStatus();
  });
}

absl::StatusOr<std::vector<StagedEvidence>> SqlCaseStore::StagedEvidenceOf(
    const std::string& request_id) {
  std::vector<StagedEvidence> out;
  COMITY_RETURN_IF_ERROR(db_->Read([&](Session& s) {
    return s.Query(
        "SELECT request_id, sha256, name, size, staged_by FROM staged_evidence WHERE "
        "request_id = $1 ORDER BY staged_at_us, name",
        Params().Text(request_id), [&](const Row& row) {
          StagedEvidence f;
          f.request_id = row.Bytes(0);
          f.sha256 = row.Bytes(1);
          f.name = row.Bytes(2);
          f.size = static_cast<uint64_t>(row.Int(3));
          f.staged_by = row.Bytes(4);
          out.push_back(std::move(f));
          return absl::OkStatus();
        });
  }));
  return out;
}

}  // namespace comity::sql
