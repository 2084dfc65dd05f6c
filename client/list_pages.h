// Lists that come in pages (docs/operator_api.md, "Lists come in pages"):
// follows next_page_token until the caller has what it asked for, so that
// no single answer grows with the node's store.
//
//   std::vector<v1::RequestRecord> records;
//   grpc::Status st = ListRequestPages(*stub, v1::INCOMING, 2000, absl::Seconds(15),
//                                      &records);
#ifndef COMITY_CLIENT_LIST_PAGES_H_
#define COMITY_CLIENT_LIST_PAGES_H_

#include <grpcpp/grpcpp.h>

#include <cstddef>
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

}  // namespace comity

#endif  // COMITY_CLIENT_LIST_PAGES_H_
