#include "server/audit/verifier.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "comity/v1/audit.pb.h"
#include "server/audit/merkle.h"
#include "server/crypto/ed25519.h"
#include "server/util/hex.h"

namespace comity {
namespace {

class VectorSource final : public merkle::NodeSource {
 public:
  explicit VectorSource(const std::vector<std::vector<std::string>>* nodes) : nodes_(nodes) {}
  absl::StatusOr<std::string> Node(int level, uint64_t index) const override {
    if (level >= static_cast<int>(nodes_->size()) || index >= (*nodes_)[level].size()) {
      return absl::NotFoundError("node not computed");
    }
    return (*nodes_)[level][index];
  }

 private:
  const std::vector<std::vector<std::string>>* nodes_;
};

}  // namespace

std::string VerifyReport::Summary() const {
  if (!ok) return absl::StrCat("FAILED: ", error);
  std::string out = absl::StrCat(entries, " entries, root ", HexEncode(root), ", consistent (",
                                 heads, " signed tree heads and ", nodes_checked,
                                 " stored hashes checked");
  if (items_checked > 0) {
    absl::StrAppend(&out, "; ", items_checked,
                    " stored requests, receipts, steps and files match their entries");
  }
  absl::StrAppend(&out, ")");
  if (items_uncovered > 0) {
    absl::StrAppend(&out, "; ", items_uncovered,
                    " stored items predate the log and are not covered by it");
  }
  if (signed_size < entries) {
    absl::StrAppend(&out, "; entries ", signed_size, "..", entries - 1,
                    " are not covered by a signed tree head yet");
  }
  return out;
}

void LogVerifier::Fail(std::string message) {
  if (!report_.ok) return;  // Keep the first problem.
  report_.ok = false;
  report_.error = std::move(message);
}

void LogVerifier::AddEntry(uint64_t position, absl::string_view bytes) {
  if (position != expected_position_) {
    Fail(absl::StrCat("entry ", expected_position_, " is missing: the next stored entry is at ",
                      position, " (entries were deleted)"));
    // Go on over the entries that are there, in order: the first problem is
    // what the report names.
  }
  v1::AuditEntry entry;
  if (!entry.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    Fail(absl::StrCat("entry ", position, " does not parse: its bytes were changed"));
  } else if (entry.index() != position && position == expected_position_) {
    Fail(absl::StrCat("entry at position ", position, " says it is entry ", entry.index(),
                      ": entries were reordered, moved or replaced"));
  }
  // Append to the computed tree.
  std::string hash = merkle::LeafHash(bytes);
  if (computed_.empty()) computed_.emplace_back();
  computed_[0].push_back(hash);
  uint64_t index = computed_[0].size() - 1;
  for (int level = 0; (index & 1) == 1; ++level) {
    if (computed_.size() <= static_cast<size_t>(level + 1)) computed_.emplace_back();
    const std::string& left = computed_[level][index - 1];
    computed_[level + 1].push_back(merkle::NodeHash(left, computed_[level][index]));
    index >>= 1;
  }
  ++expected_position_;
  report_.entries = expected_position_;
}

std::string LogVerifier::ComputedNode(int level, uint64_t index) const {
  if (level >= static_cast<int>(computed_.size()) || index >= computed_[level].size()) return "";
  return computed_[level][index];
}

void LogVerifier::CheckNode(int level, uint64_t index, absl::string_view hash) {
  ++report_.nodes_checked;
  std::string computed = ComputedNode(level, index);
  if (computed.empty()) {
    Fail(absl::StrCat("stored hash (level ", level, ", index ", index,
                      ") covers entries the log does not have: the log was truncated"));
  } else if (computed != hash) {
    if (level == 0) {
      Fail(absl::StrCat("entry ", index,
                        " does not match its stored leaf hash: it was changed after it was "
                        "logged"));
    } else {
      Fail(absl::StrCat("stored hash (level ", level, ", index ", index, ") over entries ",
                        index << level, "..", ((index + 1) << level) - 1,
                        " does not match the entries: an entry or the hash was changed"));
    }
  }
}

std::string LogVerifier::RootAt(uint64_t size) const {
  auto root = merkle::RootHash(VectorSource(&computed_), size);
  return root.ok() ? *root : "";
}

void LogVerifier::CheckHead(const v1::SignedEnvelope& signed_head) {
  ++report_.heads;
  v1::TreeHead head;
  if (!head.ParseFromString(signed_head.payload())) {
    Fail("a stored tree head does not parse");
    return;
  }
  std::string what = absl::StrCat("tree head for size ", head.tree_size());
  absl::Status sig = VerifyEnvelope(signed_head, kTreeHeadPayloadType, *keys_);
  if (!sig.ok()) {
    Fail(absl::StrCat(what, ": ", sig.message(), " (the head was replaced or forged)"));
    return;
  }
  if (signed_head.signer_party() != party_ || head.party() != party_) {
    Fail(absl::StrCat(what, ": signed by ", signed_head.signer_party(), ", not by ", party_));
    return;
  }
  if (head.tree_size() > report_.entries) {
    Fail(absl::StrCat(what, " covers ", head.tree_size(), " entries but the log has only ",
                      report_.entries, ": entries ", report_.entries, "..",
                      head.tree_size() - 1, " were removed (truncated)"));
    return;
  }
  report_.signed_size = std::max<uint64_t>(report_.signed_size, head.tree_size());
  std::string root = RootAt(head.tree_size());
  if (root != head.root_hash()) {
    if (first_mismatch_.empty()) {
      first_mismatch_ = absl::StrCat(what, ": signed root ", HexEncode(head.root_hash()),
                                     " differs from the root recomputed from the entries, ",
                                     HexEncode(root));
    }
    mismatched_.emplace_back(head.tree_size(), head.root_hash());
    return;
  }
  heads_.emplace_back(head.tree_size(), root);
}

VerifyReport LogVerifier::Finish() {
  report_.root = RootAt(report_.entries);
  if (!mismatched_.empty()) {
    // The entries below the largest head that still matches are as signed;
    // the smallest head that does not match covers the changed entry.
    const auto smallest = *std::min_element(mismatched_.begin(), mismatched_.end());
    const uint64_t hi = smallest.first;
    // Leaf hashes given beside the entries that recompute the signed root
    // are as good as signed: the first entry that differs from them is it.
    if (claimed_.size() >= hi) {
      std::vector<std::vector<std::string>> levels(1);
      for (uint64_t i = 0; i < hi; ++i) {
        levels[0].push_back(claimed_[i]);
        for (uint64_t index = i, level = 0; (index & 1) == 1; ++level, index >>= 1) {
          if (levels.size() <= level + 1) levels.emplace_back();
          levels[level + 1].push_back(
              merkle::NodeHash(levels[level][index - 1], levels[level][index]));
        }
      }
      auto root = merkle::RootHash(VectorSource(&levels), hi);
      if (root.ok() && *root == smallest.second) {
        for (uint64_t i = 0; i < hi; ++i) {
          if (ComputedNode(0, i) != claimed_[i]) {
            Fail(absl::StrCat("entry ", i, " was changed: its hash differs from the one the "
                              "signed head for size ", hi, " covers (", first_mismatch_, ")"));
            return report_;
          }
        }
      }
    }
    uint64_t lo = 0;
    for (const auto& [size, root] : heads_) {
      if (size < hi) lo = std::max(lo, size);
    }
    Fail(hi == lo + 1
             ? absl::StrCat("entry ", lo, " was changed: ", first_mismatch_,
                            "; the head for size ", hi, " no longer matches",
                            lo > 0 ? absl::StrCat(", the head for size ", lo, " still does") : "")
             : absl::StrCat("an entry in ", lo, "..", hi - 1, " was changed (the first at or after ",
                            lo, "): ", first_mismatch_, "; no signed head between sizes ", lo,
                            " and ", hi, " narrows it further"));
  }
  // Heads that verified are consistent with each other by construction (all
  // recomputed from the same entries); check the proofs anyway, as a
  // partner holding only the heads would.
  std::sort(heads_.begin(), heads_.end());
  VectorSource source(&computed_);
  for (size_t i = 1; i < heads_.size(); ++i) {
    auto proof = merkle::ConsistencyProof(source, heads_[i - 1].first, heads_[i].first);
    absl::Status st = proof.ok() ? merkle::VerifyConsistency(heads_[i - 1].first, heads_[i].first,
                                                             heads_[i - 1].second,
                                                             heads_[i].second, *proof)
                                 : proof.status();
    if (!st.ok()) {
      Fail(absl::StrCat("tree heads for sizes ", heads_[i - 1].first, " and ", heads_[i].first,
                        " are not consistent: ", st.message()));
    }
  }
  return report_;
}

VerifyReport VerifyBundle(const v1::AuditBundle& bundle) {
  KeyRing keys;
  VerifyReport bad;
  bad.ok = false;
  for (const v1::PublicKeyEntry& k : bundle.public_keys()) {
    absl::Status st = keys.Add(k.party(), k.key_id(), k.ed25519_public_key());
    if (!st.ok()) {
      bad.error = absl::StrCat("bundle key ", k.key_id(), ": ", st.message());
      return bad;
    }
  }
  LogVerifier verifier(bundle.party(), &keys);
  verifier.SetClaimedLeafHashes(
      std::vector<std::string>(bundle.leaf_hashes().begin(), bundle.leaf_hashes().end()));
  for (int i = 0; i < bundle.entries_size(); ++i) verifier.AddEntry(i, bundle.entries(i));
  for (const std::string& bytes : bundle.tree_heads()) {
    v1::SignedEnvelope head;
    if (!head.ParseFromString(bytes)) {
      bad.error = "a tree head in the bundle does not parse";
      return bad;
    }
    verifier.CheckHead(head);
  }
  return verifier.Finish();
}

}  // namespace comity
