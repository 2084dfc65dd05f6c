// RequestStore in SQL: the requests table (docs/storage.md).
#include <algorithm>
#include <limits>
#include <map>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/crypto/sha256.h"
#include "server/store/sql/rows.h"
#include "server/store/sql/sql_store.h"
#include "server/util/status_macros.h"

namespace comity::sql {
namespace {

constexpr int kMaxPage = 1000;

// A page cursor: the sort key of the last record of the page before.
struct Cursor {
  int64_t stored_at_us = 0;
  int64_t direction = 0;
  std::string request_id;
};

std::string EncodeCursor(const v1::RequestRecord& last, const std::string& request_id) {
  return absl::StrCat(
      "c1:", last.stored_at().seconds() * 1000000 + last.stored_at().nanos() / 1000, ":",
      static_cast<int>(last.direction()), ":", request_id);
}

absl::StatusOr<Cursor> DecodeCursor(const std::string& text) {
  std::vector<std::string> parts = absl::StrSplit(text, absl::MaxSplits(':', 3));
  Cursor c;
  if (parts.size() != 4 || parts[0] != "c1" ||
      !absl::SimpleAtoi(parts[1], &c.stored_at_us) ||
      !absl::SimpleAtoi(parts[2], &c.direction) || parts[3].empty() ||
      parts[3].size() > 128) {
    return absl::InvalidArgumentError(
        "not a page cursor of this node: pass the next_cursor a previous page returned");
  }
  c.request_id = parts[3];
  return c;
}

// An id is one case on a node (a case's transitions are stored by request
// id): AlreadyExists if a record of `direction` holds it.
absl::Status RefuseIdInUse(Session& s, const std::string& request_id, v1::Direction direction,
                           const char* verb) {
  COMITY_ASSIGN_OR_RETURN(
      int64_t n,
      QueryInt(s, "SELECT COUNT(*) FROM requests WHERE request_id = $1 AND direction = $2",
               Params().Text(request_id).Int(direction)));
  if (n == 0) return absl::OkStatus();
  return absl::AlreadyExistsError(
      absl::StrCat("request id ", request_id, " is already used by a request this node ", verb));
}

}  // namespace

absl::Status SqlRequestStore::InsertOutgoing(const RecordKey& key,
                                             const v1::RequestRecord& record,
                                             const AuditFn& audit) {
  return db_->Write(audit != nullptr, [&](Session& s, AuditWriter& w) -> absl::Status {
    COMITY_RETURN_IF_ERROR(RefuseIdInUse(s, key.request_id, v1::OUTGOING, "sent"));
    COMITY_RETURN_IF_ERROR(RefuseIdInUse(s, key.request_id, v1::INCOMING, "received"));
    COMITY_RETURN_IF_ERROR(InsertRecord(s, key, record));
    return audit ? audit(w) : absl::OkStatus();
  });
}

absl::StatusOr<v1::RequestRecord> SqlRequestStore::InsertIncomingIfAbsent(
    const RecordKey& key,
    const std::function<absl::StatusOr<v1::RequestRecord>(AuditWriter&)>& build,
    bool* inserted) {
  COMITY_ASSIGN_OR_RETURN(
      std::vector<IncomingOutcome> outcomes,
      InsertIncomingBatch({key}, [&](AuditWriter& w, const std::vector<size_t>&)
                                     -> absl::StatusOr<std::vector<v1::RequestRecord>> {
        COMITY_ASSIGN_OR_RETURN(v1::RequestRecord r, build(w));
        std::vector<v1::RequestRecord> built;
        built.push_back(std::move(r));
        return built;
      }));
  *inserted = outcomes[0].inserted;
  return std::move(outcomes[0].record);
}

absl::StatusOr<std::vector<RequestStore::IncomingOutcome>> SqlRequestStore::InsertIncomingBatch(
    const std::vector<RecordKey>& keys, const BuildBatchFn& build) {
  std::vector<IncomingOutcome> outcomes;
  // Opened for the audit log (whose lock serializes it with every other
  // appender, also on other replicas), so that two deliveries of one
  // request at once store it once: the second sees the first's row.
  absl::Status status = db_->Write(true, [&](Session& s, AuditWriter& w) -> absl::Status {
    outcomes.assign(keys.size(), IncomingOutcome{absl::UnknownError("not stored"), false});
    std::vector<size_t> fresh;
    std::map<std::string, size_t> first;  // Id -> its first position in `keys`.
    for (size_t i = 0; i < keys.size(); ++i) {
      const std::string& id = keys[i].request_id;
      if (first.count(id) > 0) continue;  // Answered after the insert.
      first.emplace(id, i);
      bool found = false;
      COMITY_RETURN_IF_ERROR(
          s.Query("SELECT " COMITY_RECORD_COLUMNS
                  " FROM requests WHERE request_id = $1 AND direction = 2",
                  Params().Text(id), [&](const Row& row) -> absl::Status {
                    COMITY_ASSIGN_OR_RETURN(v1::RequestRecord held, ReadRecord(row));
                    outcomes[i].record = std::move(held);
                    found = true;
                    return absl::OkStatus();
                  }));
      if (found) continue;
      if (absl::Status taken = RefuseIdInUse(s, id, v1::OUTGOING, "sent"); !taken.ok()) {
        outcomes[i].record = taken;
        continue;
      }
      fresh.push_back(i);
    }
    if (!fresh.empty()) {
      COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> built, build(w, fresh));
      if (built.size() != fresh.size()) {
        return absl::InternalError(absl::StrCat("a batch of ", fresh.size(),
                                                " requests built ", built.size(), " records"));
      }
      for (size_t j = 0; j < fresh.size(); ++j) {
        COMITY_RETURN_IF_ERROR(InsertRecord(s, keys[fresh[j]], built[j]));
        outcomes[fresh[j]].record = std::move(built[j]);
        outcomes[fresh[j]].inserted = true;
      }
    }
    for (size_t i = 0; i < keys.size(); ++i) {
      const size_t f = first[keys[i].request_id];
      if (f != i) outcomes[i].record = outcomes[f].record;
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return outcomes;
}

absl::Status SqlRequestStore::MarkApproved(const std::string& request_id,
                                           const v1::SignedEnvelope& signed_request,
                                           const std::string& approver, absl::Time now,
                                           const AuditFn& audit) {
  return db_->Write(audit != nullptr, [&](Session& s, AuditWriter& w) -> absl::Status {
    COMITY_ASSIGN_OR_RETURN(
        int64_t changed,
        s.Exec(
            "UPDATE requests SET state = $1, request_envelope = $2, payload_sha256 = $3, "
            "approved_by = $4, updated_at_us = $5, next_attempt_at_us = $5 "
            "WHERE request_id = $6 AND direction = 1 AND state = $7",
            Params()
                .Int(v1::PENDING_DELIVERY)
                .Blob(signed_request.SerializeAsString())
                .Blob(Sha256(signed_request.payload()))
                .Text(approver)
                .Int(ToMicros(now))
                .Text(request_id)
                .Int(v1::AWAITING_APPROVAL)));
    if (changed != 1) {
      return absl::FailedPreconditionError(
          absl::StrCat("request ", request_id, " is not awaiting approval"));
    }
    return audit ? audit(w) : absl::OkStatus();
  });
}

absl::StatusOr<std::vector<v1::RequestRecord>> SqlRequestStore::Get(
    const std::string& request_id) {
  std::vector<v1::RequestRecord> records;
  COMITY_RETURN_IF_ERROR(db_->Read([&](Session& s) -> absl::Status {
    COMITY_RETURN_IF_ERROR(
        s.Query("SELECT " COMITY_RECORD_COLUMNS
                " FROM requests WHERE request_id = $1 ORDER BY direction",
                Params().Text(request_id), [&](const Row& row) -> absl::Status {
                  COMITY_ASSIGN_OR_RETURN(v1::RequestRecord r, ReadRecord(row));
                  records.push_back(std::move(r));
                  return absl::OkStatus();
                }));
    if (records.empty()) return absl::OkStatus();
    google::protobuf::RepeatedPtrField<v1::SignedEnvelope> transitions;
    COMITY_RETURN_IF_ERROR(ReadTransitions(s, request_id, &transitions));
    for (v1::RequestRecord& r : records) *r.mutable_transitions() = transitions;
    return absl::OkStatus();
  }));
  return records;
}

absl::StatusOr<RecordPage> SqlRequestStore::List(const ListQuery& q) {
  const int limit = std::clamp(q.limit, 1, kMaxPage);
  std::optional<Cursor> after;
  if (!q.after.empty()) {
    COMITY_ASSIGN_OR_RETURN(after, DecodeCursor(q.after));
  }
  Params p;
  std::string sql =
      "SELECT " COMITY_RECORD_COLUMNS ", request_id FROM requests WHERE 1 = 1";
  if (q.direction != v1::DIRECTION_UNSPECIFIED) {
    p.Int(q.direction);
    absl::StrAppend(&sql, " AND direction = $", p.size());
  }
  if (after.has_value()) {
    // Newest first, then id and direction: what comes after the cursor.
    p.Int(after->stored_at_us).Text(after->request_id).Int(after->direction);
    const size_t a = p.size() - 2, b = p.size() - 1, c = p.size();
    // The first bound lets the index on stored_at_us serve the range.
    absl::StrAppend(&sql, " AND stored_at_us <= $", a, " AND (stored_at_us < $", a,
                    " OR (stored_at_us = $", a,
                    " AND (request_id {collate_c} > $", b, " OR (request_id = $", b,
                    " AND direction > $", c, "))))");
  }
  p.Int(limit + 1);
  absl::StrAppend(
      &sql, " ORDER BY stored_at_us DESC, request_id {collate_c}, direction LIMIT $",
      p.size());
  RecordPage page;
  std::string last_id;
  size_t bytes = 0;
  bool full = false;
  COMITY_RETURN_IF_ERROR(db_->Read([&](Session& s) {
    return s.Query(sql, p, [&](const Row& row) -> absl::Status {
      if (full) return absl::OkStatus();
      if (static_cast<int>(page.records.size()) == limit) {
        page.next_cursor = EncodeCursor(page.records.back(), last_id);
        full = true;
        return absl::OkStatus();
      }
      COMITY_ASSIGN_OR_RETURN(v1::RequestRecord r, ReadRecord(row));
      const size_t size = r.ByteSizeLong();
      if (q.max_bytes > 0 && !page.records.empty() && bytes + size > q.max_bytes) {
        page.next_cursor = EncodeCursor(page.records.back(), last_id);
        full = true;
        return absl::OkStatus();
      }
      bytes += size;
      last_id = row.Bytes(13);
      page.records.push_back(std::move(r));
      return absl::OkStatus();
    });
  }));
  return page;
}

absl::StatusOr<RecordPage> SqlRequestStore::SharedWith(const SharedQuery& q) {
  const int limit = std::clamp(q.limit, 1, kMaxPage);
  std::optional<Cursor> after;
  if (!q.after.empty()) {
    // The same shape as List's cursor, keyed by the last change.
    COMITY_ASSIGN_OR_RETURN(after, DecodeCursor(q.after));
  }
  const int64_t since = q.changed_since == absl::InfinitePast()
                            ? std::numeric_limits<int64_t>::min()
                            : absl::ToUnixMicros(q.changed_since);
  Params p;
  p.Text(q.partner).Int(since);
  std::string sql =
      "SELECT " COMITY_RECORD_COLUMNS ", request_id, updated_at_us FROM requests "
      "WHERE updated_at_us >= $2 AND ((direction = 1 AND requested_party = $1) OR "
      "(direction = 2 AND requesting_party = $1))";
  if (after.has_value()) {
    p.Int(after->stored_at_us).Text(after->request_id).Int(after->direction);
    const size_t a = p.size() - 2, b = p.size() - 1, c = p.size();
    absl::StrAppend(&sql, " AND updated_at_us >= $", a, " AND (updated_at_us > $", a,
                    " OR (updated_at_us = $", a, " AND (request_id {collate_c} > $", b,
                    " OR (request_id = $", b, " AND direction > $", c, "))))");
  }
  p.Int(limit + 1);
  absl::StrAppend(&sql, " ORDER BY updated_at_us, request_id {collate_c}, direction LIMIT $",
                  p.size());
  RecordPage page;
  COMITY_RETURN_IF_ERROR(db_->Read([&](Session& s) -> absl::Status {
    std::vector<std::pair<std::string, int64_t>> keys;  // Id and last change, per record.
    COMITY_RETURN_IF_ERROR(s.Query(sql, p, [&](const Row& row) -> absl::Status {
      COMITY_ASSIGN_OR_RETURN(v1::RequestRecord r, ReadRecord(row));
      page.records.push_back(std::move(r));
      keys.emplace_back(row.Bytes(13), row.Int(14));
      return absl::OkStatus();
    }));
    const bool more = static_cast<int>(page.records.size()) > limit;
    if (more) page.records.resize(static_cast<size_t>(limit));
    size_t bytes = 0;
    for (size_t i = 0; i < page.records.size(); ++i) {
      v1::RequestRecord& r = page.records[i];
      COMITY_RETURN_IF_ERROR(ReadTransitions(s, keys[i].first, r.mutable_transitions()));
      const size_t size = r.ByteSizeLong();
      if (q.max_bytes > 0 && i > 0 && bytes + size > q.max_bytes) {
        page.records.resize(i);
        break;
      }
      bytes += size;
    }
    if (more || page.records.size() < keys.size()) {
      const size_t last = page.records.size() - 1;
      page.next_cursor =
          absl::StrCat("c1:", keys[last].second, ":",
                       static_cast<int>(page.records[last].direction()), ":", keys[last].first);
    }
    return absl::OkStatus();
  }));
  return page;
}

absl::StatusOr<std::vector<std::string>> SqlRequestStore::Linked(
    const std::string& request_id) {
  std::vector<std::string> ids;
  COMITY_RETURN_IF_ERROR(db_->Read([&](Session& s) {
    return s.Query(
        "SELECT related_id FROM request_links WHERE request_id = $1 UNION "
        "SELECT request_id FROM request_links WHERE related_id = $1 ORDER BY 1",
        Params().Text(request_id), [&](const Row& row) {
          ids.push_back(row.Bytes(0));
          return absl::OkStatus();
        });
  }));
  return ids;
}

absl::StatusOr<std::vector<RequestCount>> SqlRequestStore::Count() {
  std::vector<RequestCount> out;
  COMITY_RETURN_IF_ERROR(db_->Read([&](Session& s) {
    return s.Query(
        "SELECT direction, state, CASE WHEN direction = 1 THEN requested_party ELSE "
        "requesting_party END AS partner, COUNT(*) FROM requests "
        "GROUP BY direction, state, partner",
        Params(), [&](const Row& row) {
          RequestCount c;
          c.direction = static_cast<v1::Direction>(row.Int(0));
          c.state = static_cast<v1::RequestState>(row.Int(1));
          c.partner = row.Bytes(2);
          c.count = static_cast<uint64_t>(row.Int(3));
          out.push_back(std::move(c));
          return absl::OkStatus();
        });
  }));
  return out;
}

}  // namespace comity::sql
