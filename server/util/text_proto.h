// Protocol buffer text format, parsed with errors a person can act on.
//
//   v1::NodeConfig config;
//   COMITY_RETURN_IF_ERROR(ParseTextProto(text, "FR/node.conf", &config));
#ifndef COMITY_SERVER_UTIL_TEXT_PROTO_H_
#define COMITY_SERVER_UTIL_TEXT_PROTO_H_

#include <string>

#include "absl/status/status.h"
#include "google/protobuf/message.h"

namespace comity {

// Parses protobuf text format into `msg`. InvalidArgument naming `source`,
// the line and column of the first problem, and the expected message type.
absl::Status ParseTextProto(const std::string& text, const std::string& source,
                            google::protobuf::Message* msg);

}  // namespace comity

#endif  // COMITY_SERVER_UTIL_TEXT_PROTO_H_
