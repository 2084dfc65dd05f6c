// Internal to server/store/: how the stored types map to rows, written once
// for both backends (docs/storage.md).
#ifndef COMITY_SERVER_STORE_SQL_ROWS_H_
#define COMITY_SERVER_STORE_SQL_ROWS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "comity/v1/record.pb.h"
#include "server/store/sql/database.h"
#include "server/store/store.h"

namespace comity::sql {

// The columns ReadRecord reads, in its order: "SELECT " kRecordColumns ...
#define COMITY_RECORD_COLUMNS                                                          \
  "direction, state, request_envelope, receipt_envelope, submitted_by, stored_at_us, " \
  "updated_at_us, delivery_attempts, last_error, next_attempt_at_us, approved_by, "    \
  "case_state, next_deadline_us"

// A request record from a row of COMITY_RECORD_COLUMNS (no transitions).
// DataLoss if a stored envelope does not parse.
absl::StatusOr<v1::RequestRecord> ReadRecord(const Row& row);

// Inserts `record` under `key`, with its links (RecordKey::related_request_ids).
// AlreadyExists if the (id, direction) is stored.
absl::Status InsertRecord(Session& s, const RecordKey& key,
                          const v1::RequestRecord& record);

// The transitions of a request, in sequence order. DataLoss if one does not
// parse.
absl::Status ReadTransitions(Session& s, const std::string& request_id,
                             google::protobuf::RepeatedPtrField<v1::SignedEnvelope>* out);

// A proposal from a row of "id, request_id, peer, envelope, attempts, last_error".
absl::StatusOr<PendingProposal> ReadProposal(const Row& row);

// A signed head from column `col` of a row. DataLoss (naming `what`) if it
// does not parse.
absl::StatusOr<StoredTreeHead> ReadHead(const Row& row, int col, const char* what);

// A function that reads the rows of a query as values.
template <typename T>
using RowsReader = absl::StatusOr<std::vector<T>> (*)(Session&, absl::string_view sql,
                                                      const Params& params);

// The rows of `sql` read by `read`: in a write transaction of its own when
// `write` (a statement that claims what it returns), else in a read.
template <typename T>
absl::StatusOr<std::vector<T>> Fetch(Database* db, bool write, RowsReader<T> read,
                                     absl::string_view sql, const Params& params) {
  std::vector<T> out;
  auto body = [&](Session& s) -> absl::Status {
    auto rows = read(s, sql, params);
    if (!rows.ok()) return rows.status();
    out = *std::move(rows);
    return absl::OkStatus();
  };
  absl::Status st =
      write ? db->Write(false, [&](Session& s, AuditWriter&) { return body(s); })
            : db->Read(body);
  if (!st.ok()) return st;
  return out;
}

// Microseconds of a stored time column; InfiniteFuture for NULL.
absl::Time TimeOrFuture(const Row& row, int col);

}  // namespace comity::sql

#endif  // COMITY_SERVER_STORE_SQL_ROWS_H_
