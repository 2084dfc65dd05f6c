// The deadlines of open cases (docs/lifecycle.md, "Deadlines"): the node's
// service levels (acknowledge, decide) and the instruments' (a
// preservation's term). Every case carries its next deadline in the store;
// the watch lists what is late or expiring and escalates, once per
// deadline, a BINDING request whose requested party missed one.
//
//   DeadlineWatch watch(&ctx);
//   watch.Reindex();                       // At start: deadlines under today's service
//   levels. watch.Check();                         // Run by a worker.
//   COMITY_ASSIGN_OR_RETURN(OverduePage page, watch.Overdue(100, ""));
//   ... page.next_page_token: pass it back for the next page ...

#ifndef COMITY_SERVER_NODE_DEADLINE_WATCH_H_
#define COMITY_SERVER_NODE_DEADLINE_WATCH_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "comity/v1/record.pb.h"
#include "server/node/node_context.h"

namespace comity {

// A page of late and expiring deadlines (DeadlineWatch::Overdue).
struct OverduePage {
  std::vector<v1::CaseDeadline> deadlines;
  std::string next_page_token;  // Empty on the last page.
};

// Thread-safe.
class DeadlineWatch {
 public:
  // The most cases one page of Overdue covers, and the default.
  static constexpr int kMaxOverduePage = 1000;

  explicit DeadlineWatch(const NodeContext* ctx) : ctx_(ctx) {}

  // One page of the late and expiring deadlines of the cases on this node
  // (both directions), at the node's clock, soonest case first (by its
  // next deadline, then request id and direction): the deadlines of at
  // most `limit` cases (0: kMaxOverduePage; at most that) and about
  // `max_bytes` of them (0: no bound; at least one case's), from
  // `page_token` (a next_page_token; empty: the soonest). InvalidArgument
  // for a malformed token. A case that changes between two pages may be
  // listed on neither or on both.
  absl::StatusOr<OverduePage> Overdue(int limit, const std::string& page_token,
                                      size_t max_bytes = 0);
  // Escalates (CASE_ESCALATED, error log) each BINDING request that missed
  // its acknowledge or decide deadline, once per deadline, and sets each
  // case it looked at to be checked again at its next deadline still to
  // come.
  void Check();
  // Recomputes the next deadline of every open case (service levels may
  // have changed since the cases last changed; a migrated store holds
  // none). Returns how many changed.
  absl::StatusOr<int> Reindex();

 private:
  const NodeContext* const ctx_;
  absl::Mutex check_mu_;  // One Check at a time: its check-then-log must not race.
};

}  // namespace comity

#endif  // COMITY_SERVER_NODE_DEADLINE_WATCH_H_
