#include "server/audit/merkle.h"

#include <openssl/err.h>
#include <openssl/evp.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <utility>

#include "absl/numeric/bits.h"
#include "absl/strings/str_cat.h"
#include "server/crypto/ed25519.h"
#include "server/crypto/sha256.h"
#include "server/util/hex.h"
#include "server/util/status_macros.h"

namespace comity::merkle {
namespace {

constexpr unsigned char kLeafPrefix = 0x00;
constexpr unsigned char kNodePrefix = 0x01;

[[noreturn]] void DieOpenSsl(const char* what) {
  // Only on memory exhaustion or a broken OpenSSL: nothing sane to return.
  char buf[256] = "unknown OpenSSL error";
  if (unsigned long code = ERR_get_error(); code != 0) {
    ERR_error_string_n(code, buf, sizeof(buf));
  }
  std::fprintf(stderr, "fatal: %s failed: %s\n", what, buf);
  std::abort();
}

// SHA-256, fetched once. An explicitly fetched EVP_MD lets EVP_DigestInit_ex
// reuse the context's provider state; the implicit EVP_sha256() would make
// OpenSSL 3 look the algorithm up again on every init. Never freed.
const EVP_MD* Sha256Md() {
  static const EVP_MD* const md = [] {
    EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    if (fetched == nullptr) DieOpenSsl("EVP_MD_fetch(SHA256)");
    return fetched;
  }();
  return md;
}

struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};

// One digest context per thread, reused by every hash on that thread.
EVP_MD_CTX* ThreadMdCtx() {
  thread_local const std::unique_ptr<EVP_MD_CTX, MdCtxDeleter> ctx(EVP_MD_CTX_new());
  if (ctx == nullptr) DieOpenSsl("EVP_MD_CTX_new");
  return ctx.get();
}

// SHA-256(prefix || a || b), streamed: the inputs are not copied.
std::string PrefixedHash(unsigned char prefix, absl::string_view a, absl::string_view b) {
  EVP_MD_CTX* ctx = ThreadMdCtx();
  std::string digest(kHashSize, '\0');
  unsigned int len = 0;
  if (EVP_DigestInit_ex(ctx, Sha256Md(), nullptr) != 1 ||
      EVP_DigestUpdate(ctx, &prefix, 1) != 1 ||
      EVP_DigestUpdate(ctx, a.data(), a.size()) != 1 ||
      EVP_DigestUpdate(ctx, b.data(), b.size()) != 1 ||
      EVP_DigestFinal_ex(ctx, reinterpret_cast<unsigned char*>(digest.data()), &len) !=
          1 ||
      len != kHashSize) {
    DieOpenSsl("SHA-256");
  }
  return digest;
}

// The largest power of two strictly below n (RFC 9162's k). Requires n >= 2.
uint64_t SplitPoint(uint64_t n) { return uint64_t{1} << (absl::bit_width(n - 1) - 1); }

std::string HashCount(size_t n) { return absl::StrCat(n, n == 1 ? " hash" : " hashes"); }

absl::StatusOr<std::string> FetchNode(const NodeSource& source, int level,
                                      uint64_t index) {
  COMITY_ASSIGN_OR_RETURN(std::string hash, source.Node(level, index));
  if (hash.size() != kHashSize) {
    return absl::DataLossError(absl::StrCat("stored Merkle node (level ", level,
                                            ", index ", index, ") is ", hash.size(),
                                            " bytes, expected ", kHashSize));
  }
  return hash;
}

// MTH(D[begin:end]) for 0 <= begin < end. Requires begin to be a multiple of
// the smallest power of two >= end - begin, which holds for every range the
// RFC 9162 recursions visit. The left part of every split is complete, so
// this takes popcount(end - begin) lookups.
absl::StatusOr<std::string> SubtreeHash(const NodeSource& source, uint64_t begin,
                                        uint64_t end) {
  const uint64_t n = end - begin;
  if (absl::has_single_bit(n)) {
    const int level = absl::countr_zero(n);
    return FetchNode(source, level, begin >> level);
  }
  const uint64_t k = SplitPoint(n);
  COMITY_ASSIGN_OR_RETURN(std::string left, SubtreeHash(source, begin, begin + k));
  COMITY_ASSIGN_OR_RETURN(std::string right, SubtreeHash(source, begin + k, end));
  return NodeHash(left, right);
}

// RFC 9162 PATH(index, D[begin:end]), appended to `proof` leaf side first.
// Below a left turn every sibling is complete, so at most one sibling (the
// first right one) is an incomplete subtree: O(log n) lookups in all.
absl::Status AppendPath(const NodeSource& source, uint64_t index, uint64_t begin,
                        uint64_t end, std::vector<std::string>* proof) {
  if (end - begin == 1) return absl::OkStatus();
  const uint64_t mid = begin + SplitPoint(end - begin);
  std::string sibling;
  if (index < mid) {
    COMITY_RETURN_IF_ERROR(AppendPath(source, index, begin, mid, proof));
    COMITY_ASSIGN_OR_RETURN(sibling, SubtreeHash(source, mid, end));
  } else {
    COMITY_RETURN_IF_ERROR(AppendPath(source, index, mid, end, proof));
    COMITY_ASSIGN_OR_RETURN(sibling, SubtreeHash(source, begin, mid));
  }
  proof->push_back(std::move(sibling));
  return absl::OkStatus();
}

// RFC 9162 SUBPROOF(m, D[begin:end], whole), appended to `proof`, with
// 0 < m <= end - begin. Ranges reaching m == end - begin are complete
// subtrees (one lookup); as for AppendPath, O(log n) lookups in all.
absl::Status AppendSubproof(const NodeSource& source, uint64_t m, uint64_t begin,
                            uint64_t end, bool whole, std::vector<std::string>* proof) {
  const uint64_t n = end - begin;
  if (m == n) {
    if (whole) return absl::OkStatus();
    COMITY_ASSIGN_OR_RETURN(std::string hash, SubtreeHash(source, begin, end));
    proof->push_back(std::move(hash));
    return absl::OkStatus();
  }
  const uint64_t k = SplitPoint(n);
  std::string sibling;
  if (m <= k) {
    COMITY_RETURN_IF_ERROR(AppendSubproof(source, m, begin, begin + k, whole, proof));
    COMITY_ASSIGN_OR_RETURN(sibling, SubtreeHash(source, begin + k, end));
  } else {
    COMITY_RETURN_IF_ERROR(AppendSubproof(source, m - k, begin + k, end, false, proof));
    COMITY_ASSIGN_OR_RETURN(sibling, SubtreeHash(source, begin, begin + k));
  }
  proof->push_back(std::move(sibling));
  return absl::OkStatus();
}

absl::Status CheckHashSize(absl::string_view what, absl::string_view hash) {
  if (hash.size() == kHashSize) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(what, " is ", hash.size(), " bytes, expected ", kHashSize));
}

absl::Status CheckProofHashSizes(absl::string_view kind,
                                 const std::vector<std::string>& proof) {
  for (size_t i = 0; i < proof.size(); ++i) {
    COMITY_RETURN_IF_ERROR(
        CheckHashSize(absl::StrCat(kind, " proof hash ", i), proof[i]));
  }
  return absl::OkStatus();
}

// The split of an inclusion proof for leaf `index` in a tree of `size`
// (transparency-dev decompInclProof): `inner` hashes below the level where
// the paths to `index` and to `size - 1` meet, then `border` hashes of left
// siblings along the right border.
struct ProofShape {
  int inner;
  int border;
};
ProofShape DecomposeInclusionProof(uint64_t index, uint64_t size) {
  const int inner = absl::bit_width(index ^ (size - 1));
  // inner can be 64 (e.g. index 0 in a tree of 2^63 + 1); a 64-bit shift by
  // 64 is undefined.
  const int border = inner >= 64 ? 0 : absl::popcount(index >> inner);
  return {inner, border};
}

// Folds proof[from, from + count) into `seed` as siblings on the path of
// node `index` (at the level of proof[from]): a clear bit means the sibling
// is on the right. With `left_only`, right siblings are skipped, which gives
// the hash of the earlier (smaller) version of the subtree.
std::string ChainInner(std::string seed, const std::vector<std::string>& proof,
                       size_t from, int count, uint64_t index, bool left_only) {
  for (int i = 0; i < count; ++i) {
    const std::string& sibling = proof[from + static_cast<size_t>(i)];
    if ((index >> i) & 1) {
      seed = NodeHash(sibling, seed);
    } else if (!left_only) {
      seed = NodeHash(seed, sibling);
    }
  }
  return seed;
}

// Folds proof[from, end) into `seed` as left siblings on the right border.
std::string ChainBorder(std::string seed, const std::vector<std::string>& proof,
                        size_t from) {
  for (size_t i = from; i < proof.size(); ++i) seed = NodeHash(proof[i], seed);
  return seed;
}

}  // namespace

std::string LeafHash(absl::string_view entry) {
  return PrefixedHash(kLeafPrefix, entry, absl::string_view());
}

std::string NodeHash(absl::string_view left, absl::string_view right) {
  return PrefixedHash(kNodePrefix, left, right);
}

std::string EmptyRoot() { return Sha256(""); }

absl::StatusOr<std::string> RootHash(const NodeSource& source, uint64_t size) {
  if (size == 0) return EmptyRoot();
  return SubtreeHash(source, 0, size);
}

absl::StatusOr<std::vector<std::string>> InclusionProof(const NodeSource& source,
                                                        uint64_t index, uint64_t size) {
  if (index >= size) {
    return absl::InvalidArgumentError(
        absl::StrCat("leaf index ", index, " is out of range for a tree of size ", size));
  }
  std::vector<std::string> proof;
  proof.reserve(static_cast<size_t>(absl::bit_width(size - 1)));
  COMITY_RETURN_IF_ERROR(AppendPath(source, index, 0, size, &proof));
  return proof;
}

absl::StatusOr<std::vector<std::string>> ConsistencyProof(const NodeSource& source,
                                                          uint64_t old_size,
                                                          uint64_t new_size) {
  if (old_size > new_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "old tree size ", old_size, " is larger than new tree size ", new_size));
  }
  std::vector<std::string> proof;
  // Every tree extends the empty tree, and a tree extends itself: nothing to
  // prove. (RFC 9162 defines PROOF only for 0 < old_size; it gives the empty
  // proof for old_size == new_size.)
  if (old_size == 0 || old_size == new_size) return proof;
  proof.reserve(static_cast<size_t>(absl::bit_width(new_size - 1)) + 1);
  COMITY_RETURN_IF_ERROR(AppendSubproof(source, old_size, 0, new_size, true, &proof));
  return proof;
}

absl::Status VerifyInclusion(uint64_t index, uint64_t size, absl::string_view leaf_hash,
                             const std::vector<std::string>& proof,
                             absl::string_view root) {
  if (index >= size) {
    return absl::InvalidArgumentError(
        absl::StrCat("leaf index ", index, " is out of range for a tree of size ", size));
  }
  COMITY_RETURN_IF_ERROR(CheckHashSize("leaf hash", leaf_hash));
  COMITY_RETURN_IF_ERROR(CheckHashSize("root hash", root));
  const ProofShape shape = DecomposeInclusionProof(index, size);
  const size_t want = static_cast<size_t>(shape.inner + shape.border);
  if (proof.size() != want) {
    return absl::InvalidArgumentError(
        absl::StrCat("inclusion proof has ", HashCount(proof.size()), ", expected ", want,
                     " for index ", index, " in a tree of ", size));
  }
  COMITY_RETURN_IF_ERROR(CheckProofHashSizes("inclusion", proof));

  std::string calculated = ChainInner(std::string(leaf_hash), proof, 0, shape.inner,
                                      index, /*left_only=*/false);
  calculated =
      ChainBorder(std::move(calculated), proof, static_cast<size_t>(shape.inner));
  if (calculated != root) {
    return absl::UnauthenticatedError(absl::StrCat(
        "calculated root ", HexEncode(calculated), " does not match the expected root ",
        HexEncode(root), " (inclusion of index ", index, " in a tree of ", size, ")"));
  }
  return absl::OkStatus();
}

absl::Status VerifyConsistency(uint64_t old_size, uint64_t new_size,
                               absl::string_view old_root, absl::string_view new_root,
                               const std::vector<std::string>& proof) {
  if (old_size > new_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "old tree size ", old_size, " is larger than new tree size ", new_size));
  }
  COMITY_RETURN_IF_ERROR(CheckHashSize("old root hash", old_root));
  COMITY_RETURN_IF_ERROR(CheckHashSize("new root hash", new_root));

  if (old_size == new_size) {
    if (!proof.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("consistency proof between trees of the same size ", old_size,
                       " must be empty, got ", HashCount(proof.size())));
    }
    if (old_root != new_root) {
      return absl::UnauthenticatedError(absl::StrCat(
          "old root ", HexEncode(old_root), " and new root ", HexEncode(new_root),
          " differ for trees of the same size ", old_size));
    }
    return absl::OkStatus();
  }
  if (old_size == 0) {
    // Every tree is an extension of the empty tree, so there is nothing to
    // prove. old_root is deliberately not compared with EmptyRoot(): the
    // empty tree has only one root, and a caller holding a claim otherwise
    // should check it where it was made.
    if (!proof.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("consistency proof from the empty tree must be empty, got ",
                       HashCount(proof.size())));
    }
    return absl::OkStatus();
  }

  // Here 0 < old_size < new_size. The proof is, after an optional seed, a
  // suffix of the inclusion proof of leaf old_size - 1 in the new tree: the
  // part above level `shift`, where old_size - 1 sits in a complete subtree of
  // 2^shift leaves shared by both trees (transparency-dev verify.go).
  ProofShape shape = DecomposeInclusionProof(old_size - 1, new_size);
  const int shift = absl::countr_zero(old_size);
  shape.inner -= shift;  // shift < inner since old_size < new_size.
  // The shared subtree is the old tree itself when old_size is a power of
  // two; otherwise its hash leads the proof.
  const bool seed_in_proof = old_size != (uint64_t{1} << shift);
  const size_t start = seed_in_proof ? 1 : 0;
  const size_t want = start + static_cast<size_t>(shape.inner + shape.border);
  if (proof.size() != want) {
    return absl::InvalidArgumentError(
        absl::StrCat("consistency proof has ", HashCount(proof.size()), ", expected ",
                     want, " from size ", old_size, " to ", new_size));
  }
  COMITY_RETURN_IF_ERROR(CheckProofHashSizes("consistency", proof));

  const std::string seed = seed_in_proof ? proof[0] : std::string(old_root);
  const uint64_t mask = (old_size - 1) >> shift;
  const size_t border_start = start + static_cast<size_t>(shape.inner);

  std::string old_calculated =
      ChainInner(seed, proof, start, shape.inner, mask, /*left_only=*/true);
  old_calculated = ChainBorder(std::move(old_calculated), proof, border_start);
  if (old_calculated != old_root) {
    return absl::UnauthenticatedError(
        absl::StrCat("old root mismatch: calculated ", HexEncode(old_calculated),
                     ", expected ", HexEncode(old_root), " (consistency from size ",
                     old_size, " to ", new_size, ")"));
  }
  std::string new_calculated =
      ChainInner(seed, proof, start, shape.inner, mask, /*left_only=*/false);
  new_calculated = ChainBorder(std::move(new_calculated), proof, border_start);
  if (new_calculated != new_root) {
    return absl::UnauthenticatedError(
        absl::StrCat("new root mismatch: calculated ", HexEncode(new_calculated),
                     ", expected ", HexEncode(new_root), " (consistency from size ",
                     old_size, " to ", new_size, ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Frontier> Frontier::Load(const NodeSource& source, uint64_t size) {
  Frontier frontier;
  frontier.nodes_.reserve(static_cast<size_t>(absl::popcount(size)));
  // One complete subtree per set bit of size, largest (leftmost) first.
  uint64_t begin = 0;
  for (int level = 63; level >= 0; --level) {
    const uint64_t width = uint64_t{1} << level;
    if ((size & width) == 0) continue;
    NodeRef node;
    node.level = level;
    node.index = begin >> level;
    COMITY_ASSIGN_OR_RETURN(node.hash, FetchNode(source, level, node.index));
    frontier.nodes_.push_back(std::move(node));
    begin += width;
  }
  frontier.size_ = size;
  return frontier;
}

void Frontier::Append(absl::string_view leaf_hash, std::vector<NodeRef>* created) {
  NodeRef leaf;
  leaf.level = 0;
  leaf.index = size_;
  leaf.hash = std::string(leaf_hash);
  if (created != nullptr) created->push_back(leaf);
  nodes_.push_back(std::move(leaf));
  ++size_;
  // Each trailing one bit of the old size is a subtree that the new leaf
  // completes a parent of: merge equal-level neighbours.
  while (nodes_.size() >= 2 && nodes_[nodes_.size() - 2].level == nodes_.back().level) {
    NodeRef right = std::move(nodes_.back());
    nodes_.pop_back();
    NodeRef& parent = nodes_.back();  // The left sibling becomes its parent.
    parent.hash = NodeHash(parent.hash, right.hash);
    parent.level += 1;
    parent.index >>= 1;
    if (created != nullptr) created->push_back(parent);
  }
}

std::string Frontier::Root() const {
  if (nodes_.empty()) return EmptyRoot();
  std::string root = nodes_.back().hash;
  for (size_t i = nodes_.size() - 1; i-- > 0;) root = NodeHash(nodes_[i].hash, root);
  return root;
}

}  // namespace comity::merkle
