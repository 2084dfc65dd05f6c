#include "client/list_pages.h"

#include <algorithm>
#include <string>

#include "absl/time/clock.h"

namespace comity {
namespace {

// The most a node hands out in one page (it may hand out fewer).
constexpr size_t kPage = 1000;

}  // namespace

grpc::Status ListRequestPages(v1::OperatorService::StubInterface& stub,
                              v1::Direction direction, size_t limit, absl::Duration per_page,
                              std::vector<v1::RequestRecord>* records) {
  std::string token;
  size_t got = 0;
  for (;;) {
    v1::ListRequestsRequest req;
    req.set_direction(direction);
    req.set_limit(static_cast<uint32_t>(limit == 0 ? kPage : std::min(kPage, limit - got)));
    req.set_page_token(token);
    v1::ListRequestsResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + per_page));
    grpc::Status status = stub.ListRequests(&ctx, req, &resp);
    if (!status.ok()) return status;
    for (v1::RequestRecord& r : *resp.mutable_records()) {
      if (limit != 0 && got == limit) break;
      records->push_back(std::move(r));
      ++got;
    }
    if (resp.next_page_token().empty() || (limit != 0 && got >= limit)) {
      return grpc::Status::OK;
    }
    if (resp.records().empty()) {
      // A node that hands out a token with no records would loop for ever.
      return grpc::Status(grpc::StatusCode::INTERNAL, "the node sent an empty page");
    }
    token = resp.next_page_token();
  }
}

}  // namespace comity
