// Verifies an audit log from its raw parts: the entries (as hashed), the
// stored node hashes (optional: an offline bundle has none) and the signed
// tree heads. Used by `comity audit verify` on a node and, offline, on an
// exported bundle.
//
//   LogVerifier v("FR", &key_ring);
//   for (each entry in order) COMITY_RETURN_IF_ERROR(v.AddEntry(position, bytes));
//   for (each stored node) v.CheckNode(level, index, hash);
//   for (each head) v.CheckHead(signed_head);
//   VerifyReport report = v.Finish();
#ifndef COMITY_SERVER_AUDIT_VERIFIER_H_
#define COMITY_SERVER_AUDIT_VERIFIER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "comity/v1/audit.pb.h"
#include "comity/v1/envelope.pb.h"
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

// Thread-compatible. Keeps every computed node hash in memory (64 bytes per
// entry).
class LogVerifier {
 public:
  // `party` is whose log this is; heads must be signed by it with a key in
  // `keys`.
  LogVerifier(std::string party, const KeyRing* keys) : party_(std::move(party)), keys_(keys) {}

  // The entry stored at `position` (its row key), in increasing order.
  void AddEntry(uint64_t position, absl::string_view bytes);
  // A stored node hash, compared with the one computed from the entries.
  void CheckNode(int level, uint64_t index, absl::string_view hash);
  // A stored signed tree head: signature, party, size and root.
  void CheckHead(const v1::SignedEnvelope& signed_head);
  // Leaf hashes the log's holder gave beside the entries (AuditBundle
  // .leaf_hashes): where they recompute the root of a head that no longer
  // matches the entries, Finish() names the first entry whose hash differs.
  void SetClaimedLeafHashes(std::vector<std::string> hashes) { claimed_ = std::move(hashes); }
  VerifyReport Finish();

 private:
  void Fail(std::string message);
  std::string ComputedNode(int level, uint64_t index) const;
  std::string RootAt(uint64_t size) const;

  std::string party_;
  const KeyRing* keys_;
  VerifyReport report_;
  uint64_t expected_position_ = 0;
  // computed_[level][index]: complete-subtree hashes computed from entries.
  std::vector<std::vector<std::string>> computed_;
  std::vector<std::pair<uint64_t, std::string>> heads_;  // (size, root) that verified.
  // Sizes of signed heads whose root the entries no longer give, with the
  // first such message: Finish() names the changed entry from the largest
  // head that still matches below the smallest that does not.
  std::vector<std::pair<uint64_t, std::string>> mismatched_;  // (size, signed root)
  std::string first_mismatch_;
  std::vector<std::string> claimed_;  // SetClaimedLeafHashes.
};

// Verifies an exported bundle offline, with the keys it carries (compare
// their fingerprints with the party's published keys).
VerifyReport VerifyBundle(const v1::AuditBundle& bundle);

}  // namespace comity

#endif  // COMITY_SERVER_AUDIT_VERIFIER_H_
