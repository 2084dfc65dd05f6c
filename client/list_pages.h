// Lists that come in pages (docs/operator_api.md, "Lists come in pages"):
// follows next_page_token until the caller has what it asked for, so that
// no single answer grows with the node's store. Each page is one call with
// its own deadline.
//
//   std::vector<v1::RequestRecord> records;
//   grpc::Status st = ListRequestPages(*stub, v1::INCOMING, 2000, absl::Seconds(15),
//                                      &records);
//   st = ReadAuditEntries(*audit_stub, filters, 0, absl::Seconds(60),
//                         [&](std::string entry) { ... }, &tree_size);
#ifndef COMITY_CLIENT_LIST_PAGES_H_
#define COMITY_CLIENT_LIST_PAGES_H_

#include <grpcpp/grpcpp.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "comity/v1/operator.grpc.pb.h"

namespace comity {

// Appends to `*records` the newest `limit` requests of `direction`
// (unspecified: both; limit 0: all), newest first, page after page, each
// call with its own deadline of `per_page`. On an error, `*records` holds
// the pages read before it.
grpc::Status ListRequestPages(v1::OperatorService::StubInterface& stub,
                              v1::Direction direction, size_t limit, absl::Duration per_page,
                              std::vector<v1::RequestRecord>* records);

// Appends to `*deadlines` every late and expiring deadline the node lists
// (ListOverdue), soonest case first, page after page. On an error,
// `*deadlines` holds the pages read before it.
grpc::Status ListOverduePages(v1::OperatorService::StubInterface& stub,
                              absl::Duration per_page,
                              std::vector<v1::CaseDeadline>* deadlines);

// Calls `fn` with each entry (serialized, as hashed) that matches the
// filters of `request`, from its from_index, in log order, page after page,
// until `limit` entries (0: every one) or the last page. `*tree_size` (if
// not null): the log's size when the last page was read.
grpc::Status ReadAuditEntries(v1::AuditService::StubInterface& stub,
                              v1::GetAuditEntriesRequest request, uint64_t limit,
                              absl::Duration per_page,
                              const std::function<void(std::string entry)>& fn,
                              uint64_t* tree_size = nullptr);

// Calls `fn` with each page of the node's signed tree heads, by tree size
// (every page carries the node's keys), until the last page or until `fn`
// returns false.
grpc::Status ForEachTreeHeadPage(
    v1::AuditService::StubInterface& stub, absl::Duration per_page,
    const std::function<bool(const v1::GetTreeHeadsResponse& page)>& fn);

}  // namespace comity

#endif  // COMITY_CLIENT_LIST_PAGES_H_
