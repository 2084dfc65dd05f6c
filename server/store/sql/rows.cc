#include "server/store/sql/rows.h"

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"
#include "server/crypto/sha256.h"
#include "server/util/status_macros.h"

namespace comity::sql {
namespace {

using google::protobuf::util::TimeUtil;

google::protobuf::Timestamp ToProto(int64_t micros) {
  return TimeUtil::MicrosecondsToTimestamp(micros);
}

}  // namespace

absl::StatusOr<v1::RequestRecord> ReadRecord(const Row& row) {
  v1::RequestRecord r;
  r.set_direction(static_cast<v1::Direction>(row.Int(0)));
  r.set_state(static_cast<v1::RequestState>(row.Int(1)));
  if (!r.mutable_request()->ParseFromString(row.Bytes(2))) {
    return absl::DataLossError("stored request envelope does not parse");
  }
  if (!row.IsNull(3) && !r.mutable_receipt()->ParseFromString(row.Bytes(3))) {
    return absl::DataLossError("stored receipt envelope does not parse");
  }
  r.set_submitted_by(row.Bytes(4));
  *r.mutable_stored_at() = ToProto(row.Int(5));
  *r.mutable_updated_at() = ToProto(row.Int(6));
  r.set_delivery_attempts(static_cast<uint32_t>(row.Int(7)));
  r.set_last_error(row.Bytes(8));
  if (!row.IsNull(9)) *r.mutable_next_attempt_at() = ToProto(row.Int(9));
  r.set_approved_by(row.Bytes(10));
  r.set_case_state(static_cast<v1::CaseState>(row.Int(11)));
  if (!row.IsNull(12)) *r.mutable_next_deadline() = ToProto(row.Int(12));
  return r;
}

absl::Status InsertRecord(Session& s, const RecordKey& key, const v1::RequestRecord& r) {
  Params p;
  p.Text(key.request_id)
      .Int(r.direction())
      .Text(key.requesting_party)
      .Text(key.requested_party)
      .Int(r.state())
      .Blob(r.request().SerializeAsString())
      .Blob(Sha256(r.request().payload()));
  if (r.has_receipt()) {
    p.Blob(r.receipt().SerializeAsString());
  } else {
    p.Null();
  }
  p.Text(r.submitted_by())
      .Int(TimeUtil::TimestampToMicroseconds(r.stored_at()))
      .Int(TimeUtil::TimestampToMicroseconds(r.updated_at()))
      .Int(r.delivery_attempts())
      .Text(r.last_error());
  if (r.has_next_attempt_at()) {
    p.Int(TimeUtil::TimestampToMicroseconds(r.next_attempt_at()));
  } else {
    p.Null();
  }
  p.Int(r.case_state());
  if (r.has_next_deadline()) {
    p.Int(TimeUtil::TimestampToMicroseconds(r.next_deadline()));
  } else {
    p.Null();
  }
  COMITY_RETURN_IF_ERROR(
      s.Exec("INSERT INTO requests (request_id, direction, requesting_party, requested_party, "
             "state, request_envelope, payload_sha256, receipt_envelope, submitted_by, "
             "stored_at_us, updated_at_us, delivery_attempts, last_error, next_attempt_at_us, "
             "case_state, next_deadline_us, next_check_us) VALUES ($1, $2, $3, $4, $5, $6, $7, "
             "$8, $9, $10, $11, $12, $13, $14, $15, $16, $16)",
             p)
          .status());
  for (const std::string& related : key.related_request_ids) {
    COMITY_RETURN_IF_ERROR(
        s.Exec("INSERT INTO request_links (request_id, related_id) VALUES ($1, $2) "
               "ON CONFLICT DO NOTHING",
               Params().Text(key.request_id).Text(related))
            .status());
  }
  return absl::OkStatus();
}

absl::Status ReadTransitions(
    Session& s, const std::string& request_id,
    google::protobuf::RepeatedPtrField<v1::SignedEnvelope>* out) {
  return s.Query(
      "SELECT envelope FROM transitions WHERE request_id = $1 ORDER BY sequence",
      Params().Text(request_id), [&](const Row& row) -> absl::Status {
        if (!out->Add()->ParseFromString(row.Bytes(0))) {
          return absl::DataLossError(absl::StrCat("a stored transition of request ",
                                                  request_id, " does not parse"));
        }
        return absl::OkStatus();
      });
}

absl::StatusOr<PendingProposal> ReadProposal(const Row& row) {
  PendingProposal p;
  p.id = row.Int(0);
  p.request_id = row.Bytes(1);
  p.peer = row.Bytes(2);
  if (!p.envelope.ParseFromString(row.Bytes(3))) {
    return absl::DataLossError("a queued proposal does not parse");
  }
  p.attempts = static_cast<uint32_t>(row.Int(4));
  p.last_error = row.Bytes(5);
  return p;
}

absl::StatusOr<StoredTreeHead> ReadHead(const Row& row, int col, const char* what) {
  StoredTreeHead h;
  if (!h.signed_head.ParseFromString(row.Bytes(col)) ||
      !h.head.ParseFromString(h.signed_head.payload())) {
    return absl::DataLossError(absl::StrCat("a stored ", what, " does not parse"));
  }
  return h;
}

absl::Time TimeOrFuture(const Row& row, int col) {
  return row.IsNull(col) ? absl::InfiniteFuture() : absl::FromUnixMicros(row.Int(col));
}

absl::StatusOr<int64_t> QueryInt(Session& s, absl::string_view sql, const Params& params,
                                 int64_t fallback) {
  int64_t v = fallback;
  bool first = true;
  COMITY_RETURN_IF_ERROR(s.Query(sql, params, [&](const Row& row) {
    if (first) v = row.Int(0);
    first = false;
    return absl::OkStatus();
  }));
  return v;
}

int64_t ToMicros(absl::Time t) { return absl::ToUnixMicros(t); }

Params& Params::TimeOrNull(absl::Time t) {
  if (t == absl::InfiniteFuture() || t == absl::InfinitePast()) return Null();
  return Int(absl::ToUnixMicros(t));
}

}  // namespace comity::sql
