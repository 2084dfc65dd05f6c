// The deadlines of open cases (docs/lifecycle.md, "Deadlines"): the node's
// service levels (acknowledge, decide) and the instruments' (a
// preservation's term). Every case carries its next deadline in the store;
// the watch lists what is late or expiring and escalates, once per
// deadline, a BINDING request whose requested party missed one.
//
//   DeadlineWatch watch(&ctx);
//   watch.Reindex();                       // At start: deadlines under today's service
//   levels. watch.Check();                         // Run by a worker.
//   COMITY_ASSIGN_OR_RETURN(auto late, watch.Overdue());
#ifndef COMITY_SERVER_NODE_DEADLINE_WATCH_H_
#define COMITY_SERVER_NODE_DEADLINE_WATCH_H_

#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "comity/v1/record.pb.h"
#include "server/node/node_context.h"

namespace comity {

// Thread-safe.
class DeadlineWatch {
 public:
  explicit DeadlineWatch(const NodeContext* ctx) : ctx_(ctx) {}

  // Late and expiring deadlines of the cases on this node (both
  // directions), at the node's clock; at most `limit`.
  absl::StatusOr<std::vector<v1::CaseDeadline>> Overdue(int limit = 1000);
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
