// AuditService (role auditor): each handler hands the call to
// Node::operator_api().
#include <algorithm>
#include <deque>
#include <string>

#include "server/audit/merkle.h"
#include "server/grpc/adapter_util.h"
#include "server/grpc/services.h"

namespace comity {
namespace {

// Rows read from the store at a time.
constexpr uint64_t kExportBatch = 512;
// What a message leaves of the limit for its framing and the fields it
// repeats.
constexpr size_t kExportMargin = 16 << 10;

// Streams the log in bundles of at most about the node's message limit:
// the first carries the party and keys, then the signed heads a page at a
// time, then the entries with their leaf hashes. The client merges them
// (repeated fields concatenate) into one AuditBundle.
class ExportReactor final : public grpc::ServerWriteReactor<v1::AuditBundle> {
 public:
  explicit ExportReactor(AuditExportStream stream)
      : stream_(std::move(stream)),
        budget_(std::max<size_t>(stream_.max_bytes, 2 * kExportMargin) - kExportMargin) {
    current_ = std::move(stream_.first);
    StartWrite(&current_);
  }
  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
      return;
    }
    current_.Clear();
    absl::Status filled = heads_done_ ? FillEntries() : FillHeads();
    if (!filled.ok()) {
      Finish(ToGrpcStatus(filled));
      return;
    }
    if (current_.tree_heads_size() == 0 && current_.entries_size() == 0) {
      Finish(grpc::Status::OK);
      return;
    }
    StartWrite(&current_);
  }
  void OnDone() override { delete this; }

 private:
  // The next heads, up to the budget (at least one per message).
  absl::Status FillHeads() {
    size_t bytes = 0;
    for (;;) {
      if (pending_heads_.empty()) {
        auto heads = stream_.read_heads(next_head_size_, kExportBatch);
        if (!heads.ok()) return heads.status();
        if (heads->empty()) {
          heads_done_ = true;
          break;
        }
        next_head_size_ = heads->back().head.tree_size() + 1;
        for (StoredTreeHead& h : *heads) {
          pending_heads_.push_back(h.signed_head.SerializeAsString());
        }
      }
      const size_t size = pending_heads_.front().size() + 8;
      if (current_.tree_heads_size() > 0 && bytes + size > budget_) return absl::OkStatus();
      bytes += size;
      current_.add_tree_heads(std::move(pending_heads_.front()));
      pending_heads_.pop_front();
    }
    // Heads done: the entries start in the same message if it has room.
    return current_.tree_heads_size() == 0 ? FillEntries() : absl::OkStatus();
  }

  // The next entries with their leaf hashes, up to the budget.
  absl::Status FillEntries() {
    size_t bytes = 0;
    for (;;) {
      if (pending_entries_.empty()) {
        if (next_ >= stream_.size) return absl::OkStatus();
        auto entries = stream_.read(next_, kExportBatch);
        if (!entries.ok()) return entries.status();
        if (entries->empty()) {
          next_ = stream_.size;
          return absl::OkStatus();
        }
        next_ += entries->size();
        for (std::string& e : *entries) pending_entries_.push_back(std::move(e));
      }
      const size_t size = pending_entries_.front().size() + merkle::kHashSize + 16;
      if (current_.entries_size() > 0 && bytes + size > budget_) return absl::OkStatus();
      bytes += size;
      current_.add_leaf_hashes(merkle::LeafHash(pending_entries_.front()));
      current_.add_entries(std::move(pending_entries_.front()));
      pending_entries_.pop_front();
    }
  }

  AuditExportStream stream_;
  const size_t budget_;
  bool heads_done_ = false;
  uint64_t next_head_size_ = 0;
  std::deque<std::string> pending_heads_;
  uint64_t next_ = 0;
  std::deque<std::string> pending_entries_;
  v1::AuditBundle current_;
};

}  // namespace

grpc::ServerUnaryReactor* AuditServiceImpl::GetEntries(
    grpc::CallbackServerContext* ctx, const v1::GetAuditEntriesRequest* r,
    v1::GetAuditEntriesResponse* response) {
  if (absl::Status closed = gate_->Check(); !closed.ok()) return Done(ctx, closed);
  AuditFilter f;
  f.from_index = r->from_index();
  f.limit = r->limit();
  f.from_time_us = r->from_time_unix_micros();
  f.to_time_us = r->to_time_unix_micros();
  f.request_id = r->request_id();
  f.party = r->party();
  f.actor = r->actor();
  f.type = r->type();
  auto page = node_->operator_api().AuditEntries(CallOf(ctx, *r), f, r->page_token());
  if (page.ok()) {
    for (auto& e : page->entries) response->add_entries(std::move(e));
    response->set_tree_size(page->tree_size);
    response->set_next_page_token(std::move(page->next_page_token));
  }
  return Done(ctx, page.status());
}

grpc::ServerUnaryReactor* AuditServiceImpl::GetTreeHeads(
    grpc::CallbackServerContext* ctx, const v1::GetTreeHeadsRequest* r,
    v1::GetTreeHeadsResponse* response) {
  if (absl::Status closed = gate_->Check(); !closed.ok()) return Done(ctx, closed);
  auto page = node_->operator_api().AuditTreeHeads(
      CallOf(ctx, *r), static_cast<int>(std::min<uint32_t>(r->limit(), INT32_MAX)),
      r->page_token());
  if (page.ok()) {
    for (auto& h : page->heads) *response->add_heads() = std::move(h);
    for (auto& k : page->keys) *response->add_keys() = std::move(k);
    response->set_next_page_token(std::move(page->next_page_token));
  }
  return Done(ctx, page.status());
}

grpc::ServerUnaryReactor* AuditServiceImpl::SignTreeHead(
    grpc::CallbackServerContext* ctx, const v1::SignTreeHeadRequest* r,
    v1::SignTreeHeadResponse* response) {
  if (absl::Status closed = gate_->Check(); !closed.ok()) return Done(ctx, closed);
  auto head = node_->operator_api().AuditSignHead(CallOf(ctx, *r));
  if (head.ok()) *response->mutable_head() = *std::move(head);
  return Done(ctx, head.status());
}

grpc::ServerUnaryReactor* AuditServiceImpl::GetProof(
    grpc::CallbackServerContext* ctx, const v1::GetAuditProofRequest* r,
    v1::GetAuditProofResponse* response) {
  if (absl::Status closed = gate_->Check(); !closed.ok()) return Done(ctx, closed);
  auto proof = node_->operator_api().AuditGetProof(
      CallOf(ctx, *r), r->index(), r->tree_size(), r->consistency(), r->old_size());
  if (proof.ok()) {
    response->set_tree_size(proof->tree_size);
    response->set_root(proof->root);
    if (r->consistency()) response->set_old_root(proof->old_root);
    for (auto& h : proof->hashes) response->add_hashes(std::move(h));
    if (!proof->entry.empty()) response->set_entry(proof->entry);
  }
  return Done(ctx, proof.status());
}

grpc::ServerUnaryReactor* AuditServiceImpl::Verify(grpc::CallbackServerContext* ctx,
                                                   const v1::VerifyAuditLogRequest* r,
                                                   v1::VerifyAuditLogResponse* response) {
  if (absl::Status closed = gate_->Check(); !closed.ok()) return Done(ctx, closed);
  auto report = node_->operator_api().AuditVerify(CallOf(ctx, *r));
  if (report.ok()) {
    response->set_ok(report->ok);
    response->set_entries(report->entries);
    response->set_root(report->root);
    response->set_heads(report->heads);
    response->set_nodes_checked(report->nodes_checked);
    response->set_error(report->error);
    response->set_summary(report->Summary());
  }
  return Done(ctx, report.status());
}

grpc::ServerWriteReactor<v1::AuditBundle>* AuditServiceImpl::Export(
    grpc::CallbackServerContext* ctx, const v1::ExportAuditLogRequest* r) {
  if (absl::Status closed = gate_->Check(); !closed.ok()) {
    return new ErrorWriter<v1::AuditBundle>(closed);
  }
  auto stream = node_->operator_api().AuditExport(CallOf(ctx, *r));
  if (!stream.ok()) return new ErrorWriter<v1::AuditBundle>(stream.status());
  return new ExportReactor(*std::move(stream));
}

}  // namespace comity
