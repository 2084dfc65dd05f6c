// OutboxStore in SQL: outgoing requests pending delivery, outbound case
// steps not yet acknowledged, queued proposals (docs/delivery.md,
// docs/storage.md). Where replicas share the database (Database::shared),
// the Due* queries claim the rows they return for a lease, on the
// database's clock, skipping rows another replica is claiming right now.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "server/store/sql/rows.h"
#include "server/store/sql/sql_store.h"
#include "server/util/status_macros.h"

namespace comity::sql {
namespace {

// PostgreSQL only (claims): the database server's clock in microseconds,
// so that replicas whose clocks differ agree on when a claim expires.
#define COMITY_PG_NOW_US "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)"
// A row is free to claim for replica `me` if unclaimed, its claim expired,
// or it is already ours.
#define COMITY_CLAIMABLE(alias, me)                                                    \
  "(" alias ".claim_until_us IS NULL OR " alias ".claim_until_us <= " COMITY_PG_NOW_US \
  " OR " alias ".claimed_by = " me ")"
// PENDING_DELIVERY as a literal, not a parameter: the due indexes hold only
// pending rows (migration 10), and a planner uses a partial index only where
// the query's WHERE implies the index's, which a bound value cannot show.
#define COMITY_PENDING_STATE "1"
static_assert(v1::PENDING_DELIVERY == 1, "COMITY_PENDING_STATE must be PENDING_DELIVERY");

absl::StatusOr<std::vector<v1::RequestRecord>> ReadRecords(Session& s,
                                                           absl::string_view sql,
                                                           const Params& p) {
  std::vector<v1::RequestRecord> out;
  COMITY_RETURN_IF_ERROR(s.Query(sql, p, [&](const Row& row) -> absl::Status {
    COMITY_ASSIGN_OR_RETURN(v1::RequestRecord r, ReadRecord(row));
    out.push_back(std::move(r));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::vector<PendingTransition>> ReadPendingTransitions(
    Session& s, absl::string_view sql, const Params& p) {
  std::vector<PendingTransition> out;
  COMITY_RETURN_IF_ERROR(s.Query(sql, p, [&](const Row& row) -> absl::Status {
    PendingTransition t;
    t.request_id = row.Bytes(0);
    t.sequence = static_cast<uint32_t>(row.Int(1));
    if (!t.envelope.ParseFromString(row.Bytes(2))) {
      return absl::DataLossError("a stored transition does not parse");
    }
    t.attempts = static_cast<uint32_t>(row.Int(3));
    out.push_back(std::move(t));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::vector<PendingProposal>> ReadProposals(Session& s,
                                                           absl::string_view sql,
                                                           const Params& p) {
  std::vector<PendingProposal> out;
  COMITY_RETURN_IF_ERROR(s.Query(sql, p, [&](const Row& row) -> absl::Status {
    COMITY_ASSIGN_OR_RETURN(PendingProposal q, ReadProposal(row));
    out.push_back(std::move(q));
    return absl::OkStatus();
  }));
  return out;
}

}  // namespace

absl::StatusOr<std::vector<v1::RequestRecord>> SqlOutboxStore::DueRequests(
    const std::string& peer, absl::Time now, int limit, absl::Time latest) {
  if (db_->shared()) {
    // Claims what it returns, in one statement.
    static const char* const kClaim =
        "WITH due AS MATERIALIZED (SELECT request_id FROM requests q WHERE "
        "state = " COMITY_PENDING_STATE " AND "
        "direction = 1 AND ($1 = '' OR requested_party = $1) AND (next_attempt_at_us IS NULL OR "
        "next_attempt_at_us <= $2 OR next_attempt_at_us > $6) AND " COMITY_CLAIMABLE("q", "$3")
        " ORDER BY stored_at_us LIMIT $4 FOR UPDATE SKIP LOCKED), "
        "claimed AS (UPDATE requests r SET claimed_by = $3, claim_until_us = " COMITY_PG_NOW_US
        " + $5 FROM due WHERE r.request_id = due.request_id AND r.direction = 1 RETURNING r.*) "
        "SELECT " COMITY_RECORD_COLUMNS " FROM claimed ORDER BY stored_at_us, request_id "
        "{collate_c}";
    return Fetch(db_, true, &ReadRecords, kClaim,
                 Params()
                     .Text(peer)
                     .Int(ToMicros(now))
                     .Text(db_->replica_id())
                     .Int(limit)
                     .Int(absl::ToInt64Microseconds(db_->claim_lease()))
                     .Int(ToMicros(latest)));
  }
  // Two statements rather than "($1 = '' OR ...)", which would keep SQLite
  // from using the per-peer index; and the index named, because for
  // "ORDER BY stored_at_us LIMIT n" the planner prefers walking every
  // request in time order (e2e_bench: a third of a node's CPU at 200 req/s).
  static const char* const kAll = "SELECT " COMITY_RECORD_COLUMNS
                                  " FROM requests {indexed_by:requests_due} WHERE "
                                  "state = " COMITY_PENDING_STATE
                                  " AND direction = 1 AND (next_attempt_at_us "
                                  "IS NULL OR next_attempt_at_us <= $1 OR "
                                  "next_attempt_at_us > $3) ORDER BY stored_at_us LIMIT $2";
  static const char* const kPeer =
      "SELECT " COMITY_RECORD_COLUMNS
      " FROM requests {indexed_by:requests_due_by_peer} WHERE "
      "state = " COMITY_PENDING_STATE
      " AND requested_party = $1 AND direction = 1 AND (next_attempt_at_us IS "
      "NULL "
      "OR next_attempt_at_us <= $2 OR next_attempt_at_us > $4) ORDER BY stored_at_us LIMIT $3";
  if (peer.empty()) {
    return Fetch(db_, false, &ReadRecords, kAll,
                 Params().Int(ToMicros(now)).Int(limit).Int(ToMicros(latest)));
  }
  return Fetch(db_, false, &ReadRecords, kPeer,
               Params().Text(peer).Int(ToMicros(now)).Int(limit).Int(ToMicros(latest)));
}

// An outgoing request acknowledged with its receipt: the case starts.
constexpr char kMarkDeliveredSql[] =
    "UPDATE requests SET state = $1, receipt_envelope = $2, updated_at_us = $3, "
    "delivery_attempts = delivery_attempts + 1, last_error = '', case_state = 1, "
    "next_attempt_at_us = NULL, next_deadline_us = $4, next_check_us = $4, claimed_by = NULL, "
    "claim_until_us = NULL WHERE request_id = $5 AND direction = 1 AND state = $6";

absl::Status SqlOutboxStore::UpdatePending(const std::string& request_id, const char* sql,
                                           Params params, const AuditFn& audit) {
  params.Text(request_id).Int(v1::PENDING_DELIVERY);
  return db_->Write(audit != nullptr, [&](Session& s, AuditWriter& w) -> absl::Status {
    COMITY_ASSIGN_OR_RETURN(int64_t changed, s.Exec(sql, params));
    if (changed != 1) {
      return absl::NotFoundError(
          absl::StrCat("no outgoing request ", request_id, " pending delivery"));
    }
    return audit ? audit(w) : absl::OkStatus();
  });
}

absl::Status SqlOutboxStore::MarkDelivered(const std::string& request_id,
                                           const v1::SignedEnvelope& receipt,
                                           absl::Time now, absl::Time next_deadline,
                                           const AuditFn& audit) {
  return UpdatePending(
      request_id, kMarkDeliveredSql,
      Params()
          .Int(v1::DELIVERED)
          .Blob(receipt.SerializeAsString())
          .Int(ToMicros(now))
          .TimeOrNull(next_deadline),
      audit);
}

absl::StatusOr<std::vector<bool>> SqlOutboxStore::MarkDeliveredBatch(
    const std::vector<Delivered>& items, absl::Time now) {
  std::vector<bool> marked;
  const bool audit = std::any_of(items.begin(), items.end(),
                                 [](const Delivered& d) { return d.audit != nullptr; });
  absl::Status st = db_->Write(audit, [&](Session& s, AuditWriter& w) -> absl::Status {
    marked.assign(items.size(), false);
    for (size_t i = 0; i < items.size(); ++i) {
      const Delivered& d = items[i];
      COMITY_ASSIGN_OR_RETURN(
          int64_t changed,
          s.Exec(kMarkDeliveredSql, Params()
                                        .Int(v1::DELIVERED)
                                        .Blob(d.receipt.SerializeAsString())
                                        .Int(ToMicros(now))
                                        .TimeOrNull(d.next_deadline)
                                        .Text(d.request_id)
                                        .Int(v1::PENDING_DELIVERY)));
      if (changed != 1) continue;
      marked[i] = true;
      if (d.audit) COMITY_RETURN_IF_ERROR(d.audit(w));
    }
    return absl::OkStatus();
  });
  if (!st.ok()) return st;
  return marked;
}

absl::Status SqlOutboxStore::MarkDeliveryFailed(const std::string& request_id,
                                                const std::string& error, absl::Time now,
                                                absl::Time next_attempt_at,
                                                const AuditFn& audit) {
  return UpdatePending(
      request_id,
      "UPDATE requests SET updated_at_us = $1, delivery_attempts = delivery_attempts + "
      "1, "
      "last_error = $2, next_attempt_at_us = $3, claimed_by = NULL, claim_until_us = "
      "NULL "
      "WHERE request_id = $4 AND direction = 1 AND state = $5",
      Params().Int(ToMicros(now)).Text(error).Int(ToMicros(next_attempt_at)), audit);
}

absl::Status SqlOutboxStore::MarkRejected(const std::string& request_id,
                                          const std::string& error, absl::Time now,
                                          const AuditFn& audit) {
  return UpdatePending(
      request_id,
      "UPDATE requests SET state = $1, updated_at_us = $2, delivery_attempts = "
      "delivery_attempts + 1, last_error = $3, next_attempt_at_us = NULL, claimed_by = "
      "NULL, "
      "claim_until_us = NULL WHERE request_id = $4 AND direction = 1 AND state = $5",
      Params().Int(v1::DELIVERY_REJECTED).Int(ToMicros(now)).Text(error), audit);
}

absl::StatusOr<std::vector<PendingTransition>> SqlOutboxStore::DueTransitions(
    const std::string& peer, absl::Time now, int limit, absl::Time latest) {
  if (db_->shared()) {
    // Only the earliest undelivered step of each case; claiming it claims
    // the case.
    static const char* const kClaim =
        "WITH due AS MATERIALIZED (SELECT t.request_id, t.sequence FROM transitions t "
        "JOIN requests r ON r.request_id = t.request_id AND r.direction = 2 "
        "WHERE t.outbound = 1 AND t.delivered = 0 AND (t.next_attempt_at_us <= $1 OR "
        "t.next_attempt_at_us > $6) AND ($2 = '' OR r.requesting_party = $2) AND NOT EXISTS (SELECT 1 FROM "
        "transitions e WHERE e.request_id = t.request_id AND e.outbound = 1 AND "
        "e.delivered = 0 AND e.sequence < t.sequence) AND " COMITY_CLAIMABLE("t", "$3")
        " ORDER BY t.next_attempt_at_us, t.request_id {collate_c} LIMIT $4 "
        "FOR UPDATE OF t SKIP LOCKED), "
        "claimed AS (UPDATE transitions t SET claimed_by = $3, claim_until_us = " COMITY_PG_NOW_US
        " + $5 FROM due WHERE t.request_id = due.request_id AND t.sequence = due.sequence "
        "RETURNING t.request_id, t.sequence, t.envelope, t.attempts, t.next_attempt_at_us) "
        "SELECT request_id, sequence, envelope, attempts FROM claimed "
        "ORDER BY next_attempt_at_us, request_id {collate_c}";
    return Fetch(db_, true, &ReadPendingTransitions, kClaim,
                 Params()
                     .Int(ToMicros(now))
                     .Text(peer)
                     .Text(db_->replica_id())
                     .Int(limit)
                     .Int(absl::ToInt64Microseconds(db_->claim_lease()))
                     .Int(ToMicros(latest)));
  }
  // Only the earliest undelivered step of each case: a later one waits
  // until the peer has acknowledged it, whatever their retry times.
  static const char* const kSql =
      "SELECT t.request_id, t.sequence, t.envelope, t.attempts FROM transitions t "
      "JOIN requests r ON r.request_id = t.request_id AND r.direction = 2 "
      "WHERE t.outbound = 1 AND t.delivered = 0 AND (t.next_attempt_at_us <= $1 OR "
      "t.next_attempt_at_us > $4) AND ($2 = '' OR r.requesting_party = $2) AND NOT EXISTS (SELECT 1 FROM "
      "transitions e WHERE e.request_id = t.request_id AND e.outbound = 1 AND "
      "e.delivered = 0 AND e.sequence < t.sequence) "
      "ORDER BY t.next_attempt_at_us, t.request_id LIMIT $3";
  return Fetch(db_, false, &ReadPendingTransitions, kSql,
               Params().Int(ToMicros(now)).Text(peer).Int(limit).Int(ToMicros(latest)));
}

absl::Status SqlOutboxStore::MarkTransitionDelivered(const std::string& request_id,
                                                     uint32_t sequence,
                                                     const v1::SignedEnvelope& ack,
                                                     const AuditFn& audit) {
  return db_->Write(audit != nullptr, [&](Session& s, AuditWriter& w) -> absl::Status {
    COMITY_ASSIGN_OR_RETURN(
        int64_t changed,
        s.Exec(
            "UPDATE transitions SET delivered = 1, attempts = attempts + 1, last_error = "
            "'', "
            "next_attempt_at_us = NULL, ack = $1, claimed_by = NULL, claim_until_us = "
            "NULL "
            "WHERE request_id = $2 AND sequence = $3 AND outbound = 1 AND delivered = 0",
            Params().Blob(ack.SerializeAsString()).Text(request_id).Int(sequence)));
    if (changed != 1) return absl::OkStatus();  // Already delivered.
    return audit ? audit(w) : absl::OkStatus();
  });
}

absl::Status SqlOutboxStore::MarkTransitionFailed(const std::string& request_id,
                                                  uint32_t sequence,
                                                  const std::string& error,
                                                  absl::Time next_attempt_at) {
  return db_->Write(false, [&](Session& s, AuditWriter&) {
    return s
        .Exec(
            "UPDATE transitions SET attempts = attempts + 1, last_error = $1, "
            "next_attempt_at_us = $2, claimed_by = NULL, claim_until_us = NULL "
            "WHERE request_id = $3 AND sequence = $4 AND outbound = 1",
            Params()
                .Text(error)
                .Int(ToMicros(next_attempt_at))
                .Text(request_id)
                .Int(sequence))
        .status();
  });
}

absl::StatusOr<int> SqlOutboxStore::RewindTransitions(const std::string& request_id,
                                                      uint32_t before_sequence,
                                                      absl::Time now) {
  int64_t rewound = 0;
  COMITY_RETURN_IF_ERROR(db_->Write(false, [&](Session& s, AuditWriter&) -> absl::Status {
    COMITY_ASSIGN_OR_RETURN(
        rewound,
        s.Exec(
            "UPDATE transitions SET delivered = 0, next_attempt_at_us = $1, claimed_by = "
            "NULL, claim_until_us = NULL WHERE request_id = $2 AND outbound = 1 AND "
            "delivered = 1 AND sequence < $3",
            Params().Int(ToMicros(now)).Text(request_id).Int(before_sequence)));
    return absl::OkStatus();
  }));
  return static_cast<int>(rewound);
}

absl::StatusOr<int64_t> SqlOutboxStore::EnqueueProposal(
    const std::string& request_id, const std::string& peer,
    const v1::SignedEnvelope& proposal, absl::Time now, const AuditFn& audit) {
  int64_t id = 0;
  COMITY_RETURN_IF_ERROR(
      db_->Write(audit != nullptr, [&](Session& s, AuditWriter& w) -> absl::Status {
        // The check and the insert, once per request across replicas.
        COMITY_RETURN_IF_ERROR(s.Lock(absl::StrCat("proposal ", request_id)));
        COMITY_ASSIGN_OR_RETURN(
            int64_t queued,
            QueryInt(s,
                     "SELECT COUNT(*) FROM proposals WHERE request_id = $1 AND "
                     "finished = 0",
                     Params().Text(request_id)));
        if (queued != 0) {
          return absl::FailedPreconditionError(absl::StrCat(
              "request ", request_id, " already has a proposal queued for ", peer,
              "; the next step can be proposed once that one is delivered (see 'comity "
              "peers')"));
        }
        COMITY_ASSIGN_OR_RETURN(
            id,
            QueryInt(s,
                     "INSERT INTO proposals (request_id, peer, envelope, queued_at_us, "
                     "next_attempt_at_us) VALUES ($1, $2, $3, $4, $4) RETURNING id",
                     Params()
                         .Text(request_id)
                         .Text(peer)
                         .Blob(proposal.SerializeAsString())
                         .Int(ToMicros(now))));
        return audit ? audit(w) : absl::OkStatus();
      }));
  return id;
}

absl::StatusOr<std::vector<PendingProposal>> SqlOutboxStore::DueProposals(
    const std::string& peer, absl::Time now, int limit, absl::Time latest) {
  if (db_->shared()) {
    static const char* const kClaim =
        "WITH due AS MATERIALIZED (SELECT id FROM proposals p WHERE finished = 0 AND "
        "($1 = '' OR peer = $1) AND (next_attempt_at_us <= $2 OR next_attempt_at_us > $6) AND "
        COMITY_CLAIMABLE("p", "$3")
        " ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED), "
        "claimed AS (UPDATE proposals p SET claimed_by = $3, claim_until_us = " COMITY_PG_NOW_US
        " + $5 FROM due WHERE p.id = due.id RETURNING p.*) "
        "SELECT id, request_id, peer, envelope, attempts, last_error FROM claimed ORDER BY id";
    return Fetch(db_, true, &ReadProposals, kClaim,
                 Params()
                     .Text(peer)
                     .Int(ToMicros(now))
                     .Text(db_->replica_id())
                     .Int(limit)
                     .Int(absl::ToInt64Microseconds(db_->claim_lease()))
                     .Int(ToMicros(latest)));
  }
  return Fetch(
      db_, false, &ReadProposals,
      "SELECT id, request_id, peer, envelope, attempts, last_error FROM proposals "
      "WHERE finished = 0 AND ($1 = '' OR peer = $1) AND (next_attempt_at_us <= $2 OR "
      "next_attempt_at_us > $4) ORDER BY id LIMIT $3",
      Params().Text(peer).Int(ToMicros(now)).Int(limit).Int(ToMicros(latest)));
}

absl::StatusOr<std::vector<PendingProposal>> SqlOutboxStore::QueuedProposals(
    const std::string& request_id) {
  return Fetch(
      db_, false, &ReadProposals,
      "SELECT id, request_id, peer, envelope, attempts, last_error FROM proposals "
      "WHERE finished = 0 AND request_id = $1 ORDER BY id",
      Params().Text(request_id));
}

absl::Status SqlOutboxStore::FinishProposal(int64_t id, const std::string& outcome,
                                            const AuditFn& audit) {
  return db_->Write(audit != nullptr, [&](Session& s, AuditWriter& w) -> absl::Status {
    COMITY_ASSIGN_OR_RETURN(
        int64_t changed,
        s.Exec(
            "UPDATE proposals SET finished = 1, outcome = $1, attempts = attempts + 1, "
            "claimed_by = NULL, claim_until_us = NULL WHERE id = $2 AND finished = 0",
            Params().Text(outcome).Int(id)));
    if (changed != 1) return absl::OkStatus();  // Already finished.
    return audit ? audit(w) : absl::OkStatus();
  });
}

absl::Status SqlOutboxStore::MarkProposalFailed(int64_t id, const std::string& error,
                                                absl::Time next_attempt_at) {
  return db_->Write(false, [&](Session& s, AuditWriter&) {
    return s
        .Exec(
            "UPDATE proposals SET attempts = attempts + 1, last_error = $1, "
            "next_attempt_at_us = $2, claimed_by = NULL, claim_until_us = NULL "
            "WHERE id = $3 AND finished = 0",
            Params().Text(error).Int(ToMicros(next_attempt_at)).Int(id))
        .status();
  });
}

absl::StatusOr<std::map<std::string, std::pair<uint32_t, uint32_t>>>
SqlOutboxStore::Depths() {
  std::map<std::string, std::pair<uint32_t, uint32_t>> out;
  COMITY_RETURN_IF_ERROR(db_->Read([&](Session& s) -> absl::Status {
    COMITY_RETURN_IF_ERROR(
        s.Query("SELECT requested_party, COUNT(*) FROM requests WHERE direction = 1 AND "
                "state = " COMITY_PENDING_STATE " GROUP BY requested_party",
                Params(), [&](const Row& row) {
                  out[row.Bytes(0)].first = static_cast<uint32_t>(row.Int(1));
                  return absl::OkStatus();
                }));
    return s.Query(
        "SELECT r.requesting_party, COUNT(*) FROM transitions t JOIN requests r ON "
        "r.request_id = t.request_id AND r.direction = 2 WHERE t.outbound = 1 AND "
        "t.delivered = 0 GROUP BY r.requesting_party "
        "UNION ALL SELECT peer, COUNT(*) FROM proposals WHERE finished = 0 GROUP BY peer",
        Params(), [&](const Row& row) {
          out[row.Bytes(0)].second += static_cast<uint32_t>(row.Int(1));
          return absl::OkStatus();
        });
  }));
  return out;
}

}  // namespace comity::sql
