#include "server/audit/merkle.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/numeric/bits.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/crypto/ed25519.h"
#include "server/crypto/sha256.h"
#include "server/util/hex.h"
#include "tests/testing/status_matchers.h"

namespace comity::merkle {
namespace {

using ::comity::testing::IsOk;
using ::comity::testing::StatusIs;
using ::testing::AllOf;
using ::testing::AnyOf;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr uint64_t kMaxSize = 300;        // Leaves in the shared test tree.
constexpr uint64_t kExhaustiveSize = 64;  // Every index / pair up to here.

std::vector<std::string> HexAll(const std::vector<std::string>& hashes) {
  std::vector<std::string> hex;
  for (const std::string& h : hashes) hex.push_back(HexEncode(h));
  return hex;
}

// ---------------------------------------------------------------------------
// Reference implementation, straight from RFC 9162 section 2.1, over a list
// of leaf hashes, with its own hashing on comity::Sha256.

std::string RefLeafHash(absl::string_view entry) {
  return Sha256(absl::StrCat(absl::string_view("\x00", 1), entry));
}

std::string RefNodeHash(absl::string_view left, absl::string_view right) {
  return Sha256(absl::StrCat("\x01", left, right));
}

// The largest power of two smaller than n, n >= 2.
uint64_t RefSplit(uint64_t n) {
  uint64_t k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

using Leaves = std::vector<std::string>;  // Leaf hashes.

// D[begin:end] of a list of leaf hashes, without copying.
struct Range {
  const Leaves* d;
  uint64_t begin, end;
  uint64_t size() const { return end - begin; }
  Range Sub(uint64_t from, uint64_t to) const { return {d, begin + from, begin + to}; }
};

// MTH(D[n]).
std::string RefMth(Range d) {
  const uint64_t n = d.size();
  if (n == 0) return Sha256("");
  if (n == 1) return (*d.d)[d.begin];
  const uint64_t k = RefSplit(n);
  return RefNodeHash(RefMth(d.Sub(0, k)), RefMth(d.Sub(k, n)));
}

// PATH(m, D[n]).
std::vector<std::string> RefPath(uint64_t m, Range d) {
  const uint64_t n = d.size();
  if (n == 1) return {};
  const uint64_t k = RefSplit(n);
  std::vector<std::string> path;
  if (m < k) {
    path = RefPath(m, d.Sub(0, k));
    path.push_back(RefMth(d.Sub(k, n)));
  } else {
    path = RefPath(m - k, d.Sub(k, n));
    path.push_back(RefMth(d.Sub(0, k)));
  }
  return path;
}

// SUBPROOF(m, D[n], b).
std::vector<std::string> RefSubproof(uint64_t m, Range d, bool b) {
  const uint64_t n = d.size();
  if (m == n) {
    if (b) return {};
    return {RefMth(d)};
  }
  const uint64_t k = RefSplit(n);
  std::vector<std::string> proof;
  if (m <= k) {
    proof = RefSubproof(m, d.Sub(0, k), b);
    proof.push_back(RefMth(d.Sub(k, n)));
  } else {
    proof = RefSubproof(m - k, d.Sub(k, n), false);
    proof.push_back(RefMth(d.Sub(0, k)));
  }
  return proof;
}

// PROOF(m, D[n]), 0 < m <= n.
std::vector<std::string> RefProof(uint64_t m, Range d) { return RefSubproof(m, d, true); }

// ---------------------------------------------------------------------------
// Node sources.

// Every node ever created, as a store would keep them.
class MapSource : public NodeSource {
 public:
  void Add(const std::vector<NodeRef>& nodes) {
    for (const NodeRef& n : nodes) nodes_[{n.level, n.index}] = n.hash;
  }
  void Erase(int level, uint64_t index) { nodes_.erase({level, index}); }
  void Set(int level, uint64_t index, std::string hash) {
    nodes_[{level, index}] = std::move(hash);
  }
  size_t count() const { return nodes_.size(); }

  absl::StatusOr<std::string> Node(int level, uint64_t index) const override {
    auto it = nodes_.find({level, index});
    if (it == nodes_.end()) {
      return absl::NotFoundError(
          absl::StrCat("no node at level ", level, " index ", index));
    }
    return it->second;
  }

 private:
  std::map<std::pair<int, uint64_t>, std::string> nodes_;
};

// Passes lookups on to `inner`, counts them, and refuses (and records) any
// lookup of a node that does not exist in the tree of `size` leaves: the
// NodeSource contract says sources need not answer for those.
class CheckingSource : public NodeSource {
 public:
  CheckingSource(const NodeSource& inner, uint64_t size) : inner_(inner), size_(size) {}

  absl::StatusOr<std::string> Node(int level, uint64_t index) const override {
    ++lookups_;
    if (level < 0 || level > 63 || index >= (size_ >> level)) {
      ++out_of_tree_;
      return absl::InternalError(absl::StrCat("node (", level, ", ", index,
                                              ") is not in a tree of size ", size_));
    }
    return inner_.Node(level, index);
  }
  int lookups() const { return lookups_; }
  int out_of_tree() const { return out_of_tree_; }

 private:
  const NodeSource& inner_;
  const uint64_t size_;
  mutable int lookups_ = 0;
  mutable int out_of_tree_ = 0;
};

// A tree of any size (up to 2^64 - 1) whose leaves all have the same hash,
// so that the node at level L is the same for every index. Checks, like
// CheckingSource, that only nodes inside the tree are asked for.
class UniformSource : public NodeSource {
 public:
  explicit UniformSource(uint64_t size) : size_(size) {
    levels_.push_back(LeafHash("uniform"));
    for (int l = 1; l < 64; ++l)
      levels_.push_back(NodeHash(levels_.back(), levels_.back()));
  }
  absl::StatusOr<std::string> Node(int level, uint64_t index) const override {
    ++lookups_;
    if (level < 0 || level > 63 || index >= (size_ >> level)) {
      return absl::InternalError(absl::StrCat("node (", level, ", ", index,
                                              ") is not in a tree of size ", size_));
    }
    return levels_[static_cast<size_t>(level)];
  }
  const std::string& leaf() const { return levels_[0]; }
  int lookups() const { return lookups_; }

 private:
  const uint64_t size_;
  std::vector<std::string> levels_;
  mutable int lookups_ = 0;
};

// ---------------------------------------------------------------------------
// The shared test tree: kMaxSize leaves, the first eight being the
// certificate-transparency inputs.

std::vector<std::string> CtInputs() {
  return {std::string(),
          std::string("\x00", 1),
          "\x10",
          "\x20\x21",
          "\x30\x31",
          "\x40\x41\x42\x43",
          "\x50\x51\x52\x53\x54\x55\x56\x57",
          "\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f"};
}

struct TestTree {
  std::vector<std::string> entries;
  Leaves leaves;                              // leaves[i] = RefLeafHash(entries[i]).
  std::vector<std::string> roots;             // roots[n] = Frontier root after n appends.
  std::vector<std::vector<NodeRef>> created;  // created[i]: by append i.
  MapSource source;
};

const TestTree& Tree() {
  static const TestTree* const tree = [] {
    auto* t = new TestTree;
    t->entries = CtInputs();
    for (uint64_t i = t->entries.size(); i < kMaxSize; ++i) {
      t->entries.push_back(absl::StrCat("entry ", i));
    }
    Frontier f;
    t->roots.push_back(f.Root());
    for (const std::string& e : t->entries) {
      t->leaves.push_back(RefLeafHash(e));
      std::vector<NodeRef> created;
      f.Append(LeafHash(e), &created);
      t->source.Add(created);
      t->created.push_back(std::move(created));
      t->roots.push_back(f.Root());
    }
    return t;
  }();
  return *tree;
}

// The first n leaves of the shared tree.
Range Prefix(uint64_t n) { return Range{&Tree().leaves, 0, n}; }

// A bound on lookups: O(log size), at most two per level.
int MaxLookups(uint64_t size) { return 2 * absl::bit_width(size) + 1; }

// Indices to test in a tree of `size`: all of them for small trees, else the
// ends, the powers of two and their neighbours, and a stride.
bool TestIndex(uint64_t index, uint64_t size) {
  return size <= kExhaustiveSize || index < 3 || index + 3 >= size || index % 17 == 0 ||
         absl::has_single_bit(index) || absl::has_single_bit(index + 1);
}

// A copy of `hash` with one bit flipped.
std::string Flip(std::string hash, size_t byte = 7) {
  hash[byte % hash.size()] ^= 0x20;
  return hash;
}

// ---------------------------------------------------------------------------
// Hashing.

TEST(MerkleHashTest, EmptyRootKnownAnswer) {
  EXPECT_EQ(HexEncode(EmptyRoot()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Frontier().Root(), EmptyRoot());
}

TEST(MerkleHashTest, LeafHashOfEmptyEntryKnownAnswer) {
  EXPECT_EQ(HexEncode(LeafHash("")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
}

TEST(MerkleHashTest, HashesArePrefixedSha256) {
  const std::string big(1 << 20, '\xab');  // Larger than any buffer.
  for (const std::string& e : {std::string(), std::string("\0\0\x01", 3), big}) {
    EXPECT_EQ(LeafHash(e), RefLeafHash(e));
    EXPECT_EQ(LeafHash(e).size(), kHashSize);
  }
  const std::string a = LeafHash("a"), b = LeafHash("b");
  EXPECT_EQ(NodeHash(a, b), RefNodeHash(a, b));
  EXPECT_NE(NodeHash(a, b), NodeHash(b, a));
  // A node's hash can never pass for a leaf's: the prefixes differ.
  EXPECT_NE(NodeHash(a, b), LeafHash(a + b));
  EXPECT_EQ(NodeHash(big, ""), RefNodeHash(big, ""));
}

TEST(MerkleHashTest, HashingIsThreadSafe) {
  // Each thread has its own digest context; results must not mix.
  std::vector<std::string> want;
  for (int t = 0; t < 4; ++t) want.push_back(RefLeafHash(absl::StrCat("thread ", t)));
  std::vector<int> wrong(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t, &want, &wrong] {
      const std::string entry = absl::StrCat("thread ", t);
      for (int i = 0; i < 2000; ++i) {
        if (LeafHash(entry) != want[static_cast<size_t>(t)])
          ++wrong[static_cast<size_t>(t)];
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_THAT(wrong, ElementsAreArray({0, 0, 0, 0}));
}

// ---------------------------------------------------------------------------
// Certificate-transparency / transparency-dev known answers.

TEST(MerkleKnownAnswerTest, RootsOfCtTree) {
  const std::vector<std::string> want = {
      "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
      "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
      "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
      "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
      "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
      "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
      "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
  };
  // Built here from the inputs, independently of the shared tree.
  Frontier f;
  MapSource source;
  for (size_t i = 0; i < CtInputs().size(); ++i) {
    std::vector<NodeRef> created;
    f.Append(LeafHash(CtInputs()[i]), &created);
    source.Add(created);
    EXPECT_EQ(HexEncode(f.Root()), want[i]) << "size " << i + 1;
    absl::StatusOr<std::string> root = RootHash(source, i + 1);
    ASSERT_THAT(root, IsOk());
    EXPECT_EQ(HexEncode(*root), want[i]) << "size " << i + 1;
  }
}

TEST(MerkleKnownAnswerTest, CreatedNodesOfCtTree) {
  // transparency-dev testonly.NodeHashes(): [level][index].
  const std::vector<std::vector<std::string>> want = {
      {"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
       "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
       "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
       "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
       "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
       "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
       "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
       "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1"},
      {"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
       "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
       "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
       "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"},
      {"d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
       "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"},
      {"5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"},
  };
  int seen = 0;
  for (size_t i = 0; i < 8; ++i) {
    for (const NodeRef& n : Tree().created[i]) {
      ASSERT_LT(static_cast<size_t>(n.level), want.size());
      ASSERT_LT(n.index, want[static_cast<size_t>(n.level)].size());
      EXPECT_EQ(HexEncode(n.hash), want[static_cast<size_t>(n.level)][n.index])
          << "level " << n.level << " index " << n.index;
      ++seen;
    }
  }
  EXPECT_EQ(seen, 15);  // 8 + 4 + 2 + 1.
}

TEST(MerkleKnownAnswerTest, InclusionProofsOfCtTree) {
  // transparency-dev testonly/reference_test.go TestRefInclusionProof.
  struct Case {
    uint64_t index, size;
    std::vector<std::string> proof;
  };
  const std::vector<Case> cases = {
      {0, 1, {}},
      {0, 2, {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"}},
      {1, 2, {"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"}},
      {2, 3, {"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"}},
      {1,
       5,
       {"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
      {0,
       8,
       {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
      {5,
       8,
       {"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat("index ", c.index, " size ", c.size));
    absl::StatusOr<std::vector<std::string>> proof =
        InclusionProof(Tree().source, c.index, c.size);
    ASSERT_THAT(proof, IsOk());
    EXPECT_THAT(HexAll(*proof), ElementsAreArray(c.proof));
    EXPECT_THAT(VerifyInclusion(c.index, c.size, LeafHash(CtInputs()[c.index]), *proof,
                                Tree().roots[c.size]),
                IsOk());
  }
}

TEST(MerkleKnownAnswerTest, ConsistencyProofsOfCtTree) {
  // transparency-dev testonly/reference_test.go TestRefConsistencyProof.
  struct Case {
    uint64_t old_size, new_size;
    std::vector<std::string> proof;
  };
  const std::vector<Case> cases = {
      {1, 1, {}},
      {1,
       8,
       {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
      {2,
       5,
       {"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
      {6,
       8,
       {"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat("from ", c.old_size, " to ", c.new_size));
    absl::StatusOr<std::vector<std::string>> proof =
        ConsistencyProof(Tree().source, c.old_size, c.new_size);
    ASSERT_THAT(proof, IsOk());
    EXPECT_THAT(HexAll(*proof), ElementsAreArray(c.proof));
    EXPECT_THAT(VerifyConsistency(c.old_size, c.new_size, Tree().roots[c.old_size],
                                  Tree().roots[c.new_size], *proof),
                IsOk());
  }
}

// ---------------------------------------------------------------------------
// Against the reference implementation.

TEST(MerkleReferenceTest, LeafHashesMatch) {
  for (uint64_t i = 0; i < kMaxSize; ++i) {
    EXPECT_EQ(LeafHash(Tree().entries[i]), Tree().leaves[i]) << "entry " << i;
  }
}

TEST(MerkleReferenceTest, RootsMatchAtEverySize) {
  for (uint64_t size = 0; size <= kMaxSize; ++size) {
    SCOPED_TRACE(absl::StrCat("size ", size));
    const std::string want = RefMth(Prefix(size));
    EXPECT_EQ(Tree().roots[size], want);
    CheckingSource source(Tree().source, size);
    absl::StatusOr<std::string> root = RootHash(source, size);
    ASSERT_THAT(root, IsOk());
    EXPECT_EQ(*root, want);
    // One lookup per complete subtree of the right edge.
    EXPECT_EQ(source.lookups(), absl::popcount(size));
    EXPECT_EQ(source.out_of_tree(), 0);
  }
}

TEST(MerkleReferenceTest, InclusionProofsMatchAndVerify) {
  int checked = 0;
  for (uint64_t size = 1; size <= kMaxSize; ++size) {
    const Range leaves = Prefix(size);
    for (uint64_t index = 0; index < size; ++index) {
      if (!TestIndex(index, size)) continue;
      SCOPED_TRACE(absl::StrCat("index ", index, " size ", size));
      CheckingSource source(Tree().source, size);
      absl::StatusOr<std::vector<std::string>> proof =
          InclusionProof(source, index, size);
      ASSERT_THAT(proof, IsOk());
      ASSERT_EQ(*proof, RefPath(index, leaves));
      EXPECT_LE(source.lookups(), MaxLookups(size));
      EXPECT_EQ(source.out_of_tree(), 0);
      ASSERT_THAT(
          VerifyInclusion(index, size, Tree().leaves[index], *proof, Tree().roots[size]),
          IsOk());
      ++checked;
    }
  }
  EXPECT_GT(checked, 5000);
}

TEST(MerkleReferenceTest, ConsistencyProofsMatchAndVerify) {
  int checked = 0;
  for (uint64_t new_size = 0; new_size <= kMaxSize; ++new_size) {
    const Range leaves = Prefix(new_size);
    for (uint64_t old_size = 0; old_size <= new_size; ++old_size) {
      // Every pair up to kExhaustiveSize; beyond, a sample that includes
      // both ends, powers of two and their neighbours.
      if (new_size > kExhaustiveSize && old_size > 2 && old_size + 2 < new_size &&
          old_size % 23 != 0 && !absl::has_single_bit(old_size) &&
          !absl::has_single_bit(old_size + 1) && !absl::has_single_bit(old_size - 1)) {
        continue;
      }
      SCOPED_TRACE(absl::StrCat("from ", old_size, " to ", new_size));
      CheckingSource source(Tree().source, new_size);
      absl::StatusOr<std::vector<std::string>> proof =
          ConsistencyProof(source, old_size, new_size);
      ASSERT_THAT(proof, IsOk());
      if (old_size == 0) {
        EXPECT_THAT(*proof, IsEmpty());  // RFC 9162 leaves PROOF(0, ...) undefined.
      } else {
        ASSERT_EQ(*proof, RefProof(old_size, leaves));
      }
      EXPECT_LE(source.lookups(), MaxLookups(new_size));
      EXPECT_EQ(source.out_of_tree(), 0);
      ASSERT_THAT(VerifyConsistency(old_size, new_size, Tree().roots[old_size],
                                    Tree().roots[new_size], *proof),
                  IsOk());
      ++checked;
    }
  }
  EXPECT_GT(checked, 5000);
}

// ---------------------------------------------------------------------------
// Frontier.

TEST(MerkleFrontierTest, AppendEmitsLeafThenCompletedParents) {
  for (uint64_t i = 0; i < kMaxSize; ++i) {
    const std::vector<NodeRef>& created = Tree().created[i];
    SCOPED_TRACE(absl::StrCat("append ", i));
    // The leaf, then one parent per trailing one bit of the old size.
    ASSERT_EQ(created.size(), 1u + static_cast<size_t>(absl::countr_one(i)));
    for (size_t l = 0; l < created.size(); ++l) {
      EXPECT_EQ(created[l].level, static_cast<int>(l));
      EXPECT_EQ(created[l].index, i >> l);
      EXPECT_EQ(
          created[l].hash,
          RefMth(Prefix(((i >> l) + 1) << l).Sub((i >> l) << l, ((i >> l) + 1) << l)));
    }
  }
  EXPECT_EQ(Tree().source.count(), 2 * kMaxSize - absl::popcount(kMaxSize));
}

TEST(MerkleFrontierTest, AppendAcceptsNullCreated) {
  Frontier f;
  for (uint64_t i = 0; i < 13; ++i) f.Append(Tree().leaves[i], nullptr);
  EXPECT_EQ(f.size(), 13u);
  EXPECT_EQ(f.Root(), Tree().roots[13]);
}

TEST(MerkleFrontierTest, LoadMatchesIncrementalAtEverySize) {
  for (uint64_t size = 0; size <= kMaxSize; ++size) {
    SCOPED_TRACE(absl::StrCat("size ", size));
    CheckingSource source(Tree().source, size);
    absl::StatusOr<Frontier> loaded = Frontier::Load(source, size);
    ASSERT_THAT(loaded, IsOk());
    EXPECT_EQ(source.lookups(), absl::popcount(size));
    EXPECT_EQ(source.out_of_tree(), 0);
    EXPECT_EQ(loaded->size(), size);
    EXPECT_EQ(loaded->Root(), Tree().roots[size]);
    // Appending to the loaded frontier creates exactly the nodes that the
    // incremental one did.
    for (uint64_t i = size; i < std::min(size + 9, kMaxSize); ++i) {
      std::vector<NodeRef> created;
      loaded->Append(Tree().leaves[i], &created);
      ASSERT_EQ(created.size(), Tree().created[i].size()) << "append " << i;
      for (size_t j = 0; j < created.size(); ++j) {
        EXPECT_EQ(created[j].level, Tree().created[i][j].level);
        EXPECT_EQ(created[j].index, Tree().created[i][j].index);
        EXPECT_EQ(created[j].hash, Tree().created[i][j].hash);
      }
      EXPECT_EQ(loaded->Root(), Tree().roots[i + 1]) << "append " << i;
    }
  }
}

TEST(MerkleFrontierTest, LoadEmptyNeedsNoNodes) {
  MapSource empty;
  absl::StatusOr<Frontier> f = Frontier::Load(empty, 0);
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(f->size(), 0u);
  EXPECT_EQ(f->Root(), EmptyRoot());
}

TEST(MerkleFrontierTest, LoadWithMissingNodeIsNotFound) {
  MapSource source = Tree().source;
  // 13 = 8 + 4 + 1: nodes (3, 0), (2, 2), (0, 12).
  source.Erase(2, 2);
  EXPECT_THAT(Frontier::Load(source, 13),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("level 2 index 2")));
  EXPECT_THAT(Frontier::Load(source, 12), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(Frontier::Load(source, 16), IsOk());  // Needs only (4, 0).
}

// ---------------------------------------------------------------------------
// Source errors.

TEST(MerkleSourceErrorTest, MissingNodesPropagateNotFound) {
  MapSource source = Tree().source;
  source.Erase(1, 4);  // Leaves 8 and 9.
  const auto kNotFound = absl::StatusCode::kNotFound;
  // 11 = 8 + 2 + 1 needs (3, 0), (1, 4), (0, 10); 12 = 8 + 4 does not.
  EXPECT_THAT(RootHash(source, 11), StatusIs(kNotFound, HasSubstr("level 1 index 4")));
  EXPECT_THAT(RootHash(source, 12), IsOk());
  // As a right sibling that must be computed, and as a plain sibling.
  EXPECT_THAT(InclusionProof(source, 0, 11),
              StatusIs(kNotFound, HasSubstr("level 1 index 4")));
  EXPECT_THAT(InclusionProof(source, 10, 11),
              StatusIs(kNotFound, HasSubstr("level 1 index 4")));
  EXPECT_THAT(InclusionProof(source, 0, 8), IsOk());
  EXPECT_THAT(ConsistencyProof(source, 8, 11),
              StatusIs(kNotFound, HasSubstr("level 1 index 4")));
  EXPECT_THAT(ConsistencyProof(source, 3, 11),
              StatusIs(kNotFound, HasSubstr("level 1 index 4")));
  EXPECT_THAT(ConsistencyProof(source, 3, 8), IsOk());
}

TEST(MerkleSourceErrorTest, WrongSizeStoredHashIsDataLoss) {
  MapSource source = Tree().source;
  source.Set(1, 2, "short");  // Leaves 4 and 5.
  const auto kDataLoss = absl::StatusCode::kDataLoss;
  EXPECT_THAT(RootHash(source, 8), IsOk());  // Uses only (3, 0).
  EXPECT_THAT(
      RootHash(source, 7),
      StatusIs(kDataLoss, AllOf(HasSubstr("level 1, index 2"), HasSubstr("5 bytes"))));
  EXPECT_THAT(InclusionProof(source, 0, 7), StatusIs(kDataLoss));
  EXPECT_THAT(ConsistencyProof(source, 4, 7), StatusIs(kDataLoss));
  EXPECT_THAT(Frontier::Load(source, 7), StatusIs(kDataLoss));
}

// ---------------------------------------------------------------------------
// Bad arguments and bad proofs.

TEST(MerkleInclusionErrorTest, IndexOutOfRange) {
  EXPECT_THAT(InclusionProof(Tree().source, 5, 5),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("leaf index 5 is out of range for a tree of size 5")));
  EXPECT_THAT(InclusionProof(Tree().source, 0, 0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("out of range")));
  EXPECT_THAT(VerifyInclusion(9, 9, Tree().leaves[0], {}, Tree().roots[9]),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("leaf index 9 is out of range for a tree of size 9")));
  EXPECT_THAT(VerifyInclusion(0, 0, Tree().leaves[0], {}, EmptyRoot()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("out of range")));
}

TEST(MerkleInclusionErrorTest, ProofOfWrongLength) {
  const uint64_t index = 5, size = 9;
  absl::StatusOr<std::vector<std::string>> proof =
      InclusionProof(Tree().source, index, size);
  ASSERT_THAT(proof, IsOk());
  ASSERT_EQ(proof->size(), 4u);
  std::vector<std::string> shorter(proof->begin(), proof->end() - 1);
  EXPECT_THAT(
      VerifyInclusion(index, size, Tree().leaves[index], shorter, Tree().roots[size]),
      StatusIs(
          absl::StatusCode::kInvalidArgument,
          HasSubstr(
              "inclusion proof has 3 hashes, expected 4 for index 5 in a tree of 9")));
  std::vector<std::string> longer = *proof;
  longer.push_back(Tree().leaves[0]);
  EXPECT_THAT(
      VerifyInclusion(index, size, Tree().leaves[index], longer, Tree().roots[size]),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("inclusion proof has 5 hashes, expected 4")));
  EXPECT_THAT(VerifyInclusion(index, size, Tree().leaves[index], {}, Tree().roots[size]),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("inclusion proof has 0 hashes, expected 4")));
  EXPECT_THAT(
      VerifyInclusion(0, 1, Tree().leaves[0], {Tree().leaves[1]}, Tree().roots[1]),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("inclusion proof has 1 hash, expected 0")));
}

TEST(MerkleInclusionErrorTest, WrongSizeHashes) {
  const uint64_t index = 2, size = 7;
  absl::StatusOr<std::vector<std::string>> proof =
      InclusionProof(Tree().source, index, size);
  ASSERT_THAT(proof, IsOk());
  const std::string& leaf = Tree().leaves[index];
  const std::string& root = Tree().roots[size];
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  EXPECT_THAT(VerifyInclusion(index, size, leaf.substr(1), *proof, root),
              StatusIs(kInvalid, HasSubstr("leaf hash is 31 bytes, expected 32")));
  EXPECT_THAT(VerifyInclusion(index, size, leaf, *proof, root + "x"),
              StatusIs(kInvalid, HasSubstr("root hash is 33 bytes, expected 32")));
  EXPECT_THAT(VerifyInclusion(index, size, leaf, *proof, ""),
              StatusIs(kInvalid, HasSubstr("root hash is 0 bytes")));
  std::vector<std::string> bad = *proof;
  bad[1].pop_back();
  EXPECT_THAT(
      VerifyInclusion(index, size, leaf, bad, root),
      StatusIs(kInvalid, HasSubstr("inclusion proof hash 1 is 31 bytes, expected 32")));
}

TEST(MerkleInclusionErrorTest, TamperedProofWrongLeafWrongRoot) {
  const auto kUnauth = absl::StatusCode::kUnauthenticated;
  for (uint64_t size = 1; size <= 40; ++size) {
    const std::string& root = Tree().roots[size];
    for (uint64_t index = 0; index < size; ++index) {
      SCOPED_TRACE(absl::StrCat("index ", index, " size ", size));
      absl::StatusOr<std::vector<std::string>> proof =
          InclusionProof(Tree().source, index, size);
      ASSERT_THAT(proof, IsOk());
      const std::string& leaf = Tree().leaves[index];
      // Every hash of the proof matters.
      for (size_t i = 0; i < proof->size(); ++i) {
        std::vector<std::string> tampered = *proof;
        tampered[i] = Flip(tampered[i], i);
        EXPECT_THAT(VerifyInclusion(index, size, leaf, tampered, root),
                    StatusIs(kUnauth, HasSubstr("does not match the expected root")));
      }
      // Another leaf, or the right leaf under another root.
      EXPECT_THAT(VerifyInclusion(index, size, Tree().leaves[kMaxSize - 1], *proof, root),
                  StatusIs(kUnauth, HasSubstr("does not match the expected root")));
      EXPECT_THAT(VerifyInclusion(index, size, leaf, *proof, Tree().roots[size + 1]),
                  StatusIs(kUnauth, HasSubstr("does not match the expected root")));
      // Swapping adjacent proof hashes.
      if (proof->size() >= 2) {
        std::vector<std::string> swapped = *proof;
        std::swap(swapped[0], swapped[1]);
        EXPECT_THAT(VerifyInclusion(index, size, leaf, swapped, root), StatusIs(kUnauth));
      }
    }
  }
}

TEST(MerkleInclusionErrorTest, WrongIndexOrSize) {
  const uint64_t size = 21;
  const std::string& root = Tree().roots[size];
  for (uint64_t index = 0; index < size; ++index) {
    absl::StatusOr<std::vector<std::string>> proof =
        InclusionProof(Tree().source, index, size);
    ASSERT_THAT(proof, IsOk());
    // Claiming the proof is for another index fails: by length, or by root.
    for (uint64_t other = 0; other < size; ++other) {
      if (other == index) continue;
      SCOPED_TRACE(absl::StrCat("index ", index, " claimed as ", other));
      EXPECT_THAT(
          VerifyInclusion(other, size, Tree().leaves[index], *proof, root),
          AnyOf(StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("does not match")),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("inclusion proof has"))));
    }
  }
  // A specific case of each: index 5 in 8 has the same length as index 6.
  absl::StatusOr<std::vector<std::string>> proof = InclusionProof(Tree().source, 5, 8);
  ASSERT_THAT(proof, IsOk());
  EXPECT_THAT(VerifyInclusion(6, 8, Tree().leaves[5], *proof, Tree().roots[8]),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       HasSubstr("(inclusion of index 6 in a tree of 8)")));
  EXPECT_THAT(VerifyInclusion(5, 9, Tree().leaves[5], *proof, Tree().roots[8]),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("inclusion proof has 3 hashes, expected 4")));
}

TEST(MerkleConsistencyErrorTest, SizesOutOfOrder) {
  EXPECT_THAT(ConsistencyProof(Tree().source, 8, 5),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("old tree size 8 is larger than new tree size 5")));
  EXPECT_THAT(VerifyConsistency(8, 5, Tree().roots[8], Tree().roots[5], {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("old tree size 8 is larger than new tree size 5")));
}

TEST(MerkleConsistencyErrorTest, SwappedAndWrongRoots) {
  const auto kUnauth = absl::StatusCode::kUnauthenticated;
  const uint64_t old_size = 6, new_size = 13;
  absl::StatusOr<std::vector<std::string>> proof =
      ConsistencyProof(Tree().source, old_size, new_size);
  ASSERT_THAT(proof, IsOk());
  const std::string& old_root = Tree().roots[old_size];
  const std::string& new_root = Tree().roots[new_size];
  EXPECT_THAT(VerifyConsistency(old_size, new_size, new_root, old_root, *proof),
              StatusIs(kUnauth, AllOf(HasSubstr("old root mismatch"),
                                      HasSubstr(HexEncode(old_root)),
                                      HasSubstr(HexEncode(new_root)))));
  EXPECT_THAT(VerifyConsistency(old_size, new_size, old_root, Flip(new_root), *proof),
              StatusIs(kUnauth, AllOf(HasSubstr("new root mismatch: calculated "),
                                      HasSubstr(HexEncode(new_root)),
                                      HasSubstr("from size 6 to 13"))));
  EXPECT_THAT(
      VerifyConsistency(old_size, new_size, Tree().roots[old_size + 1], new_root, *proof),
      StatusIs(kUnauth, HasSubstr("old root mismatch")));
  // Power-of-two old sizes take the old root itself as the seed.
  absl::StatusOr<std::vector<std::string>> from8 = ConsistencyProof(Tree().source, 8, 13);
  ASSERT_THAT(from8, IsOk());
  EXPECT_THAT(VerifyConsistency(8, 13, Tree().roots[13], Tree().roots[8], *from8),
              StatusIs(kUnauth, AnyOf(HasSubstr("old root mismatch"),
                                      HasSubstr("new root mismatch"))));
  EXPECT_THAT(VerifyConsistency(8, 13, Tree().roots[8], Flip(Tree().roots[13]), *from8),
              StatusIs(kUnauth, HasSubstr("new root mismatch")));
}

TEST(MerkleConsistencyErrorTest, TamperedProofs) {
  const auto kUnauth = absl::StatusCode::kUnauthenticated;
  for (uint64_t new_size = 1; new_size <= 40; ++new_size) {
    for (uint64_t old_size = 1; old_size < new_size; ++old_size) {
      SCOPED_TRACE(absl::StrCat("from ", old_size, " to ", new_size));
      absl::StatusOr<std::vector<std::string>> proof =
          ConsistencyProof(Tree().source, old_size, new_size);
      ASSERT_THAT(proof, IsOk());
      for (size_t i = 0; i < proof->size(); ++i) {
        std::vector<std::string> tampered = *proof;
        tampered[i] = Flip(tampered[i], i);
        EXPECT_THAT(VerifyConsistency(old_size, new_size, Tree().roots[old_size],
                                      Tree().roots[new_size], tampered),
                    StatusIs(kUnauth, AnyOf(HasSubstr("old root mismatch"),
                                            HasSubstr("new root mismatch"))));
      }
      // The proof does not vouch for another new root, nor another old one.
      if (new_size + 1 <= kMaxSize) {
        EXPECT_FALSE(VerifyConsistency(old_size, new_size, Tree().roots[old_size],
                                       Tree().roots[new_size + 1], *proof)
                         .ok());
      }
      EXPECT_FALSE(VerifyConsistency(old_size, new_size, Flip(Tree().roots[old_size]),
                                     Tree().roots[new_size], *proof)
                       .ok());
    }
  }
}

TEST(MerkleConsistencyErrorTest, ProofOfWrongLength) {
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  const uint64_t old_size = 3, new_size = 7;
  absl::StatusOr<std::vector<std::string>> proof =
      ConsistencyProof(Tree().source, old_size, new_size);
  ASSERT_THAT(proof, IsOk());
  ASSERT_EQ(proof->size(), 4u);
  const std::string& old_root = Tree().roots[old_size];
  const std::string& new_root = Tree().roots[new_size];
  std::vector<std::string> shorter(proof->begin(), proof->end() - 1);
  EXPECT_THAT(
      VerifyConsistency(old_size, new_size, old_root, new_root, shorter),
      StatusIs(kInvalid,
               HasSubstr("consistency proof has 3 hashes, expected 4 from size 3 to 7")));
  std::vector<std::string> longer = *proof;
  longer.push_back(old_root);
  EXPECT_THAT(
      VerifyConsistency(old_size, new_size, old_root, new_root, longer),
      StatusIs(kInvalid, HasSubstr("consistency proof has 5 hashes, expected 4")));
  EXPECT_THAT(
      VerifyConsistency(old_size, new_size, old_root, new_root, {}),
      StatusIs(kInvalid, HasSubstr("consistency proof has 0 hashes, expected 4")));
  // Power-of-two old size: the old root is not repeated in the proof.
  EXPECT_THAT(
      VerifyConsistency(4, 7, Tree().roots[4], new_root, {}),
      StatusIs(kInvalid, HasSubstr("consistency proof has 0 hashes, expected 1")));
}

TEST(MerkleConsistencyErrorTest, EqualSizes) {
  const auto& roots = Tree().roots;
  EXPECT_THAT(VerifyConsistency(7, 7, roots[7], roots[7], {}), IsOk());
  EXPECT_THAT(VerifyConsistency(7, 7, roots[7], roots[6], {}),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       HasSubstr("differ for trees of the same size 7")));
  EXPECT_THAT(
      VerifyConsistency(7, 7, roots[7], roots[7], {roots[1]}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("between trees of the same size 7 must be empty, got 1 hash")));
  absl::StatusOr<std::vector<std::string>> proof = ConsistencyProof(Tree().source, 7, 7);
  ASSERT_THAT(proof, IsOk());
  EXPECT_THAT(*proof, IsEmpty());
}

TEST(MerkleConsistencyErrorTest, FromEmptyTree) {
  const auto& roots = Tree().roots;
  // Anything extends the empty tree: nothing to prove.
  absl::StatusOr<std::vector<std::string>> proof = ConsistencyProof(Tree().source, 0, 9);
  ASSERT_THAT(proof, IsOk());
  EXPECT_THAT(*proof, IsEmpty());
  EXPECT_THAT(VerifyConsistency(0, 9, EmptyRoot(), roots[9], {}), IsOk());
  EXPECT_THAT(VerifyConsistency(0, 0, EmptyRoot(), EmptyRoot(), {}), IsOk());
  EXPECT_THAT(VerifyConsistency(0, 9, EmptyRoot(), roots[9], {roots[1]}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("from the empty tree must be empty, got 1 hash")));
  MapSource empty;
  EXPECT_THAT(ConsistencyProof(empty, 0, 0), IsOk());
}

TEST(MerkleConsistencyErrorTest, WrongSizeHashes) {
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  absl::StatusOr<std::vector<std::string>> proof = ConsistencyProof(Tree().source, 3, 7);
  ASSERT_THAT(proof, IsOk());
  const std::string& old_root = Tree().roots[3];
  const std::string& new_root = Tree().roots[7];
  EXPECT_THAT(VerifyConsistency(3, 7, old_root.substr(2), new_root, *proof),
              StatusIs(kInvalid, HasSubstr("old root hash is 30 bytes, expected 32")));
  EXPECT_THAT(VerifyConsistency(3, 7, old_root, new_root + "x", *proof),
              StatusIs(kInvalid, HasSubstr("new root hash is 33 bytes, expected 32")));
  EXPECT_THAT(VerifyConsistency(0, 7, "", new_root, {}),
              StatusIs(kInvalid, HasSubstr("old root hash is 0 bytes")));
  EXPECT_THAT(VerifyConsistency(5, 5, "a", "a", {}),
              StatusIs(kInvalid, HasSubstr("old root hash is 1 bytes")));
  std::vector<std::string> bad = *proof;
  bad[3] += "x";
  EXPECT_THAT(
      VerifyConsistency(3, 7, old_root, new_root, bad),
      StatusIs(kInvalid, HasSubstr("consistency proof hash 3 is 33 bytes, expected 32")));
}

// ---------------------------------------------------------------------------
// 64-bit sizes, on a tree whose leaves are all equal (so its nodes can be
// computed without storing 2^64 leaves).

TEST(MerkleHugeTreeTest, ProofsAndFrontierAtHugeSizes) {
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  const std::vector<uint64_t> sizes = {uint64_t{1} << 32,
                                       (uint64_t{1} << 40) + 12345,
                                       (uint64_t{1} << 63) - 1,
                                       uint64_t{1} << 63,
                                       (uint64_t{1} << 63) + 1,
                                       kMax - 1,
                                       kMax};
  for (uint64_t size : sizes) {
    SCOPED_TRACE(absl::StrCat("size ", size));
    UniformSource source(size);
    absl::StatusOr<std::string> root = RootHash(source, size);
    ASSERT_THAT(root, IsOk());
    absl::StatusOr<Frontier> frontier = Frontier::Load(source, size);
    ASSERT_THAT(frontier, IsOk());
    EXPECT_EQ(frontier->Root(), *root);

    for (uint64_t index :
         {uint64_t{0}, uint64_t{1}, size / 2, size / 3, size - 2, size - 1}) {
      SCOPED_TRACE(absl::StrCat("index ", index));
      const int before = source.lookups();
      absl::StatusOr<std::vector<std::string>> proof =
          InclusionProof(source, index, size);
      ASSERT_THAT(proof, IsOk());
      EXPECT_LE(source.lookups() - before, MaxLookups(size));
      EXPECT_THAT(VerifyInclusion(index, size, source.leaf(), *proof, *root), IsOk());
      EXPECT_THAT(VerifyInclusion(index, size, Flip(source.leaf()), *proof, *root),
                  StatusIs(absl::StatusCode::kUnauthenticated));
    }
    for (uint64_t old_size : {uint64_t{1}, uint64_t{2}, uint64_t{3}, size / 2,
                              size / 3 + 1, size - 1, size}) {
      SCOPED_TRACE(absl::StrCat("old size ", old_size));
      UniformSource old_source(old_size);
      absl::StatusOr<std::string> old_root = RootHash(old_source, old_size);
      ASSERT_THAT(old_root, IsOk());
      absl::StatusOr<std::vector<std::string>> proof =
          ConsistencyProof(source, old_size, size);
      ASSERT_THAT(proof, IsOk());
      EXPECT_THAT(VerifyConsistency(old_size, size, *old_root, *root, *proof), IsOk());
      if (old_size != size) {
        EXPECT_THAT(VerifyConsistency(old_size, size, Flip(*old_root), *root, *proof),
                    StatusIs(absl::StatusCode::kUnauthenticated));
      }
    }
  }
}

TEST(MerkleHugeTreeTest, AppendToLoadedHugeFrontier) {
  const uint64_t size = (uint64_t{1} << 40) + 0xfff;  // Twelve trailing ones.
  UniformSource source(size + 1);
  absl::StatusOr<Frontier> frontier = Frontier::Load(source, size);
  ASSERT_THAT(frontier, IsOk());
  std::vector<NodeRef> created;
  frontier->Append(source.leaf(), &created);
  ASSERT_EQ(created.size(), 13u);
  EXPECT_EQ(created.back().level, 12);
  EXPECT_EQ(created.back().index, size >> 12);
  EXPECT_EQ(created.back().hash, *source.Node(12, 0));
  EXPECT_EQ(frontier->size(), size + 1);
  absl::StatusOr<std::string> root = RootHash(source, size + 1);
  ASSERT_THAT(root, IsOk());
  EXPECT_EQ(frontier->Root(), *root);
}

}  // namespace
}  // namespace comity::merkle
