// Deadlines of a case: the node's service levels (acknowledge, decide) and
// the instrument's (a preservation's term, ETS185 Art 29(7)). Pure.
#ifndef COMITY_SERVER_CORE_DEADLINES_H_
#define COMITY_SERVER_CORE_DEADLINES_H_

#include <vector>

#include "absl/time/time.h"
#include "comity/v1/config.pb.h"
#include "comity/v1/envelope.pb.h"
#include "comity/v1/record.pb.h"
#include "comity/v1/request.pb.h"

namespace comity {

// Every deadline of `record` still relevant at `now`: unmet service-level
// deadlines (overdue when past), and a preservation's expiry once accepted
// (expiring within the warning period). `record` must hold its receipt and
// transitions; records without a case yield none.
std::vector<v1::CaseDeadline> CaseDeadlines(const v1::RequestRecord& record,
                                            const v1::ServiceLevels& levels, absl::Time now);

// Every deadline of `record`, met or not, at `now` (what `comity show`
// lists): `met` set on those met; `overdue` on unmet ones past due;
// `expiring` on a preservation's expiry once within the warning period.
std::vector<v1::CaseDeadline> EveryDeadline(const v1::RequestRecord& record,
                                            const v1::ServiceLevels& levels, absl::Time now);

// When the deadlines of `record` must next be looked at: its earliest unmet
// service-level deadline, or the start of an accepted preservation's expiry
// warning, whichever comes first, later than `after`; InfiniteFuture if it
// has none (no case yet, closed, withdrawn). CaseDeadlines at that time
// lists what is due.
absl::Time NextDeadline(const v1::RequestRecord& record, const v1::ServiceLevels& levels,
                        absl::Time after = absl::InfinitePast());

// EveryDeadline and NextDeadline from `record`'s body and receipt already
// parsed (`record`'s own payloads are not parsed again): the delivery and
// intake paths hold both.
std::vector<v1::CaseDeadline> EveryDeadline(const v1::RequestRecord& record,
                                            const v1::RequestBody& body,
                                            const v1::Receipt& receipt,
                                            const v1::ServiceLevels& levels, absl::Time now);
absl::Time NextDeadline(const v1::RequestRecord& record, const v1::RequestBody& body,
                        const v1::Receipt& receipt, const v1::ServiceLevels& levels,
                        absl::Time after = absl::InfinitePast());

}  // namespace comity

#endif  // COMITY_SERVER_CORE_DEADLINES_H_
