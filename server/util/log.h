// Structured event log: one JSON object per line on stderr (or a test sink).
// Events are what an operator greps for; they never carry key material.
//
//   LogEvent(LogLevel::kWarning, "peer_request_rejected",
//            {{"peer", "JP"}, {"code", "UNAUTHENTICATED"}, {"reason", msg}});
#ifndef COMITY_SERVER_UTIL_LOG_H_
#define COMITY_SERVER_UTIL_LOG_H_

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace comity {

enum class LogLevel { kInfo, kWarning, kError };

using LogFields = std::vector<std::pair<std::string, std::string>>;

// Writes {"ts":...,"level":...,"event":...,<fields>} to the current sink.
// Thread-safe.
void LogEvent(LogLevel level, absl::string_view event, const LogFields& fields);

// Replaces where log lines go (nullptr: back to stderr). Returns the old
// sink. For tests; thread-safe.
using LogSink = std::function<void(const std::string& line)>;
LogSink SetLogSinkForTesting(LogSink sink);

}  // namespace comity

#endif  // COMITY_SERVER_UTIL_LOG_H_
