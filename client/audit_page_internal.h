// Private to the audit page's files (audit_page.cc, audit_page_html.cc,
// audit_page_render.cc): the small helpers more than one of them uses. No
// other component may include it.
//
//   using audit_page_internal::Esc;
//   using audit_page_internal::TimeText;
//   absl::StrAppend(&body, "<td>", Esc(party), "</td><td>", TimeText(micros), "</td>");
#ifndef COMITY_CLIENT_AUDIT_PAGE_INTERNAL_H_
#define COMITY_CLIENT_AUDIT_PAGE_INTERNAL_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/audit_page.h"
#include "google/protobuf/timestamp.pb.h"

namespace comity {
namespace audit_page_internal {

// HtmlEscape, short: what every page writes around text it did not make.
inline std::string Esc(absl::string_view s) { return HtmlEscape(s); }

// A call to the node with a deadline `seconds` from now.
inline std::unique_ptr<grpc::ClientContext> Context(int seconds) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(seconds)));
  return ctx;
}

// "2024-05-01 12:00:00Z" (UTC); "" for 0.
std::string TimeText(int64_t unix_micros);

// A protobuf Timestamp in microseconds since the Unix epoch.
int64_t Micros(const google::protobuf::Timestamp& ts);

// "350 ms", "4.2 s", "3.5 min", "2.0 h", "3.1 days".
std::string DurationText(double seconds);

// VERIFIED, or FAILED and the error (escaped): the outcome of a check, as HTML.
std::string Badge(const absl::Status& status);

// A link to /case/ID showing the id (escaped and percent-encoded).
std::string CaseLink(absl::string_view id);

}  // namespace audit_page_internal
}  // namespace comity

#endif  // COMITY_CLIENT_AUDIT_PAGE_INTERNAL_H_
