#include "client/list_pages.h"

#include <algorithm>
#include <string>

#include "absl/time/clock.h"

namespace comity {
namespace {

// The most a node hands out in one page (it may hand out fewer).
constexpr size_t kPage = 1000;

// A node that hands out the token it was given would loop for ever.
grpc::Status SameToken() {
  return grpc::Status(
      grpc::StatusCode::INTERNAL,
      "the node sent the page token it was given: its list does not advance");
}

void SetDeadline(grpc::ClientContext* ctx, absl::Duration per_page) {
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + per_page));
}

}  // namespace

grpc::Status ListOverduePages(v1::OperatorService::StubInterface& stub,
                              absl::Duration per_page,
                              std::vector<v1::CaseDeadline>* deadlines) {
  std::string token;
  for (;;) {
    v1::ListOverdueRequest req;
    req.set_page_token(token);
    v1::ListOverdueResponse resp;
    grpc::ClientContext ctx;
    SetDeadline(&ctx, per_page);
    grpc::Status status = stub.ListOverdue(&ctx, req, &resp);
    if (!status.ok()) return status;
    for (v1::CaseDeadline& d : *resp.mutable_deadlines())
      deadlines->push_back(std::move(d));
    // A page may hold no deadline (its cases have none late any more) and
    // still have a next one.
    if (resp.next_page_token().empty()) return grpc::Status::OK;
    if (resp.next_page_token() == token) return SameToken();
    token = resp.next_page_token();
  }
}

grpc::Status ReadAuditEntries(v1::AuditService::StubInterface& stub,
                              v1::GetAuditEntriesRequest request, uint64_t limit,
                              absl::Duration per_page,
                              const std::function<void(std::string entry)>& fn,
                              uint64_t* tree_size) {
  uint64_t got = 0;
  for (;;) {
    request.set_limit(limit == 0 ? 0 : limit - got);
    v1::GetAuditEntriesResponse resp;
    grpc::ClientContext ctx;
    SetDeadline(&ctx, per_page);
    grpc::Status status = stub.GetEntries(&ctx, request, &resp);
    if (!status.ok()) return status;
    if (tree_size != nullptr) *tree_size = resp.tree_size();
    for (std::string& e : *resp.mutable_entries()) {
      if (limit != 0 && got == limit) break;
      fn(std::move(e));
      ++got;
    }
    if (resp.next_page_token().empty() || (limit != 0 && got >= limit)) {
      return grpc::Status::OK;
    }
    if (resp.next_page_token() == request.page_token()) return SameToken();
    request.set_page_token(resp.next_page_token());
  }
}

grpc::Status ForEachTreeHeadPage(
    v1::AuditService::StubInterface& stub, absl::Duration per_page,
    const std::function<bool(const v1::GetTreeHeadsResponse& page)>& fn) {
  std::string token;
  for (;;) {
    v1::GetTreeHeadsRequest req;
    req.set_page_token(token);
    v1::GetTreeHeadsResponse resp;
    grpc::ClientContext ctx;
    SetDeadline(&ctx, per_page);
    grpc::Status status = stub.GetTreeHeads(&ctx, req, &resp);
    if (!status.ok()) return status;
    if (!fn(resp) || resp.next_page_token().empty()) return grpc::Status::OK;
    if (resp.next_page_token() == token) return SameToken();
    token = resp.next_page_token();
  }
}

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
    SetDeadline(&ctx, per_page);
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
