// `comity inbox`: what waits on whom, for every request this node holds.
// Pure: built from the records `ListRequests` returns (docs/cli.md).
#ifndef COMITY_CLIENT_WORKLIST_H_
#define COMITY_CLIENT_WORKLIST_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "comity/v1/record.pb.h"

namespace comity {

struct WorkItem {
  std::string id;
  std::string direction;        // "received" or "sent".
  std::string partner;          // The other party.
  std::string assistance_type;  // "PRESERVATION".
  std::string urgency;          // "URGENT", or "ROUTINE" when unset.
  std::string state;            // The case state, or the delivery state before a case.
  // "you" (this party must act), the partner's code, or "nobody" (closed).
  std::string waits_on;
  std::vector<std::string> next;  // The CLI verbs this party may use now.
  std::string why;                // What is expected, in words.
  absl::Time deadline = absl::InfiniteFuture();  // The case's next deadline, if any.
  std::vector<std::string> pending_conditions;   // Released evidence held back by them.
};

// One item per record not closed (and every draft awaiting approval or
// request refused for good), sorted: this party's work first, then by
// deadline (none last), then newest first.
std::vector<WorkItem> BuildWorklist(const std::vector<v1::RequestRecord>& records);

// The one request id among `records` that starts with `prefix` (at least 4
// characters of a UUID, any case). InvalidArgument for a malformed or
// ambiguous prefix (naming the candidates), NotFound for none.
absl::StatusOr<std::string> MatchIdPrefix(const std::vector<v1::RequestRecord>& records,
                                          absl::string_view prefix);

}  // namespace comity

#endif  // COMITY_CLIENT_WORKLIST_H_
