// RFC 6962 / RFC 9162 Merkle tree hashing and proofs, over any store of
// complete-subtree hashes. No I/O of its own.
//
// Tree: leaf hash = SHA-256(0x00 || entry); interior = SHA-256(0x01 || left
// || right); the empty tree's root is SHA-256(""). Leaves are numbered from
// 0. A "node" (level L, index i) is the root of the complete subtree over
// leaves [i * 2^L, (i + 1) * 2^L); level 0 nodes are leaf hashes.
//
//   Frontier f;                      // Appends and tells what to store.
//   std::vector<NodeRef> created;
//   f.Append(LeafHash(entry), &created);
//   ... store every created node ...
//   COMITY_ASSIGN_OR_RETURN(auto proof, InclusionProof(source, 5, f.size()));
//   COMITY_RETURN_IF_ERROR(
//       VerifyInclusion(5, f.size(), LeafHash(entry), proof, f.Root()));
#ifndef COMITY_SERVER_AUDIT_MERKLE_H_
#define COMITY_SERVER_AUDIT_MERKLE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace comity::merkle {

inline constexpr size_t kHashSize = 32;

std::string LeafHash(absl::string_view entry);
std::string NodeHash(absl::string_view left, absl::string_view right);
// SHA-256 of the empty string: the root of the empty tree.
std::string EmptyRoot();

struct NodeRef {
  int level = 0;
  uint64_t index = 0;
  std::string hash;
};

// Where complete-subtree hashes come from (a database, a vector in tests).
// Implementations need only answer for nodes that exist in a tree of the
// size asked about. The functions below return the source's errors as they
// are, and DataLoss if it gives a hash that is not kHashSize bytes.
class NodeSource {
 public:
  virtual ~NodeSource() = default;
  // NotFound if the node is not stored.
  virtual absl::StatusOr<std::string> Node(int level, uint64_t index) const = 0;
};

// The root of the tree of the first `size` leaves. O(log size) lookups.
absl::StatusOr<std::string> RootHash(const NodeSource& source, uint64_t size);

// RFC 9162 section 2.1.3.1 inclusion proof of leaf `index` in the tree of
// `size` leaves. InvalidArgument if index >= size. O(log size) lookups.
absl::StatusOr<std::vector<std::string>> InclusionProof(const NodeSource& source,
                                                        uint64_t index, uint64_t size);

// RFC 9162 section 2.1.4.1 consistency proof from `old_size` to
// `new_size`. InvalidArgument if old_size > new_size. The proof is empty
// for old_size == new_size and for old_size == 0 (nothing to prove).
// O(log new_size) lookups.
absl::StatusOr<std::vector<std::string>> ConsistencyProof(const NodeSource& source,
                                                          uint64_t old_size,
                                                          uint64_t new_size);

// RFC 9162 section 2.1.3.2. OK, or an error that says which check failed
// (each case its own message): InvalidArgument for an index out of range, a
// hash that is not kHashSize bytes or a wrong proof length; Unauthenticated
// when the proof does not lead to `root`.
absl::Status VerifyInclusion(uint64_t index, uint64_t size, absl::string_view leaf_hash,
                             const std::vector<std::string>& proof,
                             absl::string_view root);

// RFC 9162 section 2.1.4.2. OK, or an error per failed check:
// InvalidArgument for sizes out of order, a hash that is not kHashSize bytes
// or a wrong proof length; Unauthenticated for an old root mismatch or a new
// root mismatch. Equal sizes need equal roots and an empty proof; from
// old_size == 0 any new tree is consistent, with an empty proof.
absl::Status VerifyConsistency(uint64_t old_size, uint64_t new_size,
                               absl::string_view old_root, absl::string_view new_root,
                               const std::vector<std::string>& proof);

// The right edge of a growing tree: the roots of its maximal complete
// subtrees, enough to append leaves and compute the root without storage.
// Thread-compatible.
class Frontier {
 public:
  Frontier() = default;
  // Rebuilds the frontier of a tree of `size` leaves from stored nodes:
  // popcount(size) lookups, whose errors are returned.
  static absl::StatusOr<Frontier> Load(const NodeSource& source, uint64_t size);

  // Appends a leaf (a LeafHash, kHashSize bytes); adds to `created`, unless
  // it is null, every node completed by it (the leaf itself at level 0, then
  // each parent completed), lowest level first.
  void Append(absl::string_view leaf_hash, std::vector<NodeRef>* created);
  uint64_t size() const { return size_; }
  // Root of the current tree (EmptyRoot() when empty).
  std::string Root() const;

 private:
  uint64_t size_ = 0;
  // Complete subtree roots, from the largest (leftmost) to the smallest.
  std::vector<NodeRef> nodes_;
};

}  // namespace comity::merkle

#endif  // COMITY_SERVER_AUDIT_MERKLE_H_
