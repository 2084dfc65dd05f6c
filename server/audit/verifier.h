// Verifies an audit log from its raw parts: the entries (as hashed), the
// stored node hashes (optional: an offline bundle has none) and the signed
// tree heads. Used by `comity audit verify` on a node and, offline, on an
// exported bundle.
//
//   LogVerifier v("FR", &key_ring);
//   for (each entry in order) {
//     v.AddEntry(position, bytes);
//     for (level < v.NodesCompleted()) v.CheckNode(level, index, stored hash);
//     for (each head of size v.size()) v.CheckHead(signed_head);
//   }
//   for (each stored node and head beyond the log) v.CheckNode(...) / v.CheckHead(...);
//   VerifyReport report = v.Finish();
#ifndef COMITY_SERVER_AUDIT_VERIFIER_H_
#define COMITY_SERVER_AUDIT_VERIFIER_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "comity/v1/audit.pb.h"
#include "comity/v1/envelope.pb.h"
#include "server/audit/merkle.h"
#include "server/core/envelope.h"

namespace comity {

struct VerifyReport {
  bool ok = true;
  uint64_t entries = 0;
  std::string root;  // Of all entries, raw 32 bytes.
  uint64_t heads = 0;
  // The largest size a signed head covers: entries at or after it are not
  // signed yet (a live log's tail), so a copy could change them unseen.
  uint64_t signed_size = 0;
  uint64_t nodes_checked = 0;
  // Stored requests, receipts, steps, acknowledgements and staged evidence
  // files checked against the entries that logged them (node only:
  // CoverageChecker, server/audit/coverage.h); and those stored before the
  // log began (a file migrated from schema version 1), which no entry covers.
  uint64_t items_checked = 0;
  uint64_t items_uncovered = 0;
  // The first problem found: where and why.
  std::string error;

  std::string Summary() const;
};

// Verifies in one pass at constant memory: it keeps the Merkle frontier
// (the O(log n) roots of the complete subtrees) and a bounded window of
// heads whose signatures are being checked, never the nodes or the heads
// themselves. Thread-compatible; signatures are checked on a small pool of
// threads of its own.
//
// The calls follow the log: AddEntry for each entry in order; right after
// it, CheckNode for the stored nodes that entry completes (see
// NodesCompleted); CheckHead for each head of size s, in increasing size,
// once exactly s entries were added; after the last entry, CheckNode for
// stored nodes that remain (they cover entries the log does not have) and
// CheckHead for heads larger than the log. Finish() reports the first
// problem in the order the checks read: entries, stored hashes (by level,
// index), heads (by size), then which entry a head no longer matching
// names.
class LogVerifier {
 public:
  // `party` is whose log this is; heads must be signed by it with a key in
  // `keys` (which must outlive this object; KeyRing is thread-safe).
  // `signature_threads`: 0 checks signatures inline.
  LogVerifier(std::string party, const KeyRing* keys, int signature_threads = 2);
  ~LogVerifier();
  LogVerifier(const LogVerifier&) = delete;
  LogVerifier& operator=(const LogVerifier&) = delete;

  // The entry stored at `position` (its row key), in increasing order.
  void AddEntry(uint64_t position, absl::string_view bytes);
  // The leaf hash the log's holder gave beside the next entry (AuditBundle
  // .leaf_hashes), in order, each before the AddEntry of its entry:
  // where they recompute the root of a head that no longer matches the
  // entries, Finish() names the first entry whose hash differs.
  void AddClaimedLeafHash(absl::string_view hash);
  // Entries added so far.
  uint64_t size() const { return frontier_.size(); }
  // The nodes the last AddEntry completed: (level, index) for level 0 ..
  // NodesCompleted() - 1, index = (size() - 1) >> level.
  int NodesCompleted() const { return static_cast<int>(completed_.size()); }
  // A stored node hash, compared with the one computed from the entries.
  void CheckNode(int level, uint64_t index, absl::string_view hash);
  // A stored signed tree head: signature, party, size and root.
  void CheckHead(const v1::SignedEnvelope& signed_head);
  // Waits for the signature checks and reports.
  VerifyReport Finish();

 private:
  struct PendingHead;
  void Fail(std::string message);
  void FailNode(int level, uint64_t index, std::string message);
  void FailHead(std::string message);
  void WorkerLoop();
  bool HasWorkOrStop() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stop_ || !work_.empty();
  }
  // Applies the heads at the front whose signature was checked, in order;
  // `all`: waits for every one.
  void Settle(bool all);
  void Apply(PendingHead& h);

  std::string party_;
  const KeyRing* keys_;
  VerifyReport report_;
  uint64_t expected_position_ = 0;
  merkle::Frontier frontier_;
  std::vector<std::string> completed_;  // By level: the last AddEntry's nodes.
  // Errors by the order in which they are reported (class comment).
  std::string entry_error_;
  std::string node_error_;
  std::pair<int, uint64_t> node_error_at_{0, 0};
  std::string head_error_;
  // Heads in size order: the first that no longer matches the entries
  // (its size, signed root, message), and the largest before it that does.
  bool mismatch_ = false;
  uint64_t mismatch_size_ = 0;
  std::string first_mismatch_;
  bool mismatch_named_by_claims_ = false;
  uint64_t matched_below_ = 0;  // Largest matching size below the current group.
  uint64_t group_size_ = 0;     // Size of the last head applied.
  bool group_matched_ = false;
  // The claimed leaf hashes: their frontier and the first that differs
  // from the entry's own.
  merkle::Frontier claimed_;
  uint64_t first_claim_differs_ = UINT64_MAX;
  std::string last_claim_;

  // Signature checks: heads in size order, checked by workers_.
  absl::Mutex mu_;
  std::deque<std::unique_ptr<PendingHead>> pending_;  // Owned; by size.
  std::deque<PendingHead*> work_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
};

// Verifies a bundle held in memory, with the keys it carries.
// Verifies an exported bundle offline, with the keys it carries (compare
// their fingerprints with the party's published keys).
VerifyReport VerifyBundle(const v1::AuditBundle& bundle);

// What a bundle file holds besides its entries and heads.
struct BundleInfo {
  std::string party;
  std::vector<v1::PublicKeyEntry> public_keys;
};

// Verifies the bundle file at `path` (a serialized AuditBundle, as
// `comity audit export` writes it) reading it incrementally: memory stays
// bounded whatever its size, unless its heads are not in size order (a
// bundle no export wrote), which are then held in memory to be sorted.
// The file's own errors (missing, not a bundle) are returned; *info gets
// its party and keys.
absl::StatusOr<VerifyReport> VerifyBundleFile(const std::string& path, BundleInfo* info);

}  // namespace comity

#endif  // COMITY_SERVER_AUDIT_VERIFIER_H_
