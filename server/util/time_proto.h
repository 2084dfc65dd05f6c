// google.protobuf.Timestamp to and from absl::Time.
//
//   *msg.mutable_created_at() = ToProto(clock->Now());
//   absl::Time created = FromProto(msg.created_at());
#ifndef COMITY_SERVER_UTIL_TIME_PROTO_H_
#define COMITY_SERVER_UTIL_TIME_PROTO_H_

#include "absl/time/time.h"
#include "google/protobuf/timestamp.pb.h"

namespace comity {

// Microsecond precision (what the store keeps).
google::protobuf::Timestamp ToProto(absl::Time t);
absl::Time FromProto(const google::protobuf::Timestamp& ts);

}  // namespace comity

#endif  // COMITY_SERVER_UTIL_TIME_PROTO_H_
