#include "server/crypto/ed25519.h"

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/crypto/random.h"
#include "server/crypto/sha256.h"
#include "server/util/hex.h"
#include "tests/testing/status_matchers.h"

namespace comity {
namespace {

using ::comity::testing::IsOk;
using ::comity::testing::StatusIs;
using ::testing::HasSubstr;

// RFC 8032 section 7.1, TEST 1 (empty message) and TEST 2 (one byte).
constexpr char kTest1Secret[] =
    "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
constexpr char kTest1Public[] =
    "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
constexpr char kTest1Signature[] =
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
    "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";
constexpr char kTest2Secret[] =
    "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";
constexpr char kTest2Public[] =
    "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
constexpr char kTest2Signature[] =
    "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
    "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00";

// Wraps a raw 32-byte Ed25519 secret in PKCS#8 PEM (RFC 8410).
std::string PemFromRawSecret(const std::string& hex_secret) {
  std::string der = absl::HexStringToBytes("302e020100300506032b657004220420") +
                    absl::HexStringToBytes(hex_secret);
  return absl::StrCat("-----BEGIN PRIVATE KEY-----\n", absl::Base64Escape(der),
                      "\n-----END PRIVATE KEY-----\n");
}

TEST(Ed25519Test, Rfc8032KnownAnswers) {
  struct Case {
    const char* secret;
    const char* public_key;
    std::string message;
    const char* signature;
  };
  for (const Case& c : {Case{kTest1Secret, kTest1Public, "", kTest1Signature},
                        Case{kTest2Secret, kTest2Public, "\x72", kTest2Signature}}) {
    COMITY_ASSERT_OK_AND_ASSIGN(auto key, SigningKey::FromPem(PemFromRawSecret(c.secret)));
    EXPECT_EQ(HexEncode(key->public_key()), c.public_key);
    COMITY_ASSERT_OK_AND_ASSIGN(std::string sig, key->Sign(c.message));
    EXPECT_EQ(HexEncode(sig), c.signature);
    COMITY_ASSERT_OK_AND_ASSIGN(auto pub,
                                VerifyingKey::FromRaw(absl::HexStringToBytes(c.public_key)));
    EXPECT_THAT(pub->Verify(c.message, absl::HexStringToBytes(c.signature)), IsOk());
  }
}

TEST(Ed25519Test, SignVerifyRoundTrip) {
  COMITY_ASSERT_OK_AND_ASSIGN(auto key, SigningKey::Generate());
  COMITY_ASSERT_OK_AND_ASSIGN(std::string sig, key->Sign("hello"));
  EXPECT_EQ(sig.size(), kEd25519SignatureSize);
  COMITY_ASSERT_OK_AND_ASSIGN(auto pub, VerifyingKey::FromRaw(key->public_key()));
  EXPECT_THAT(pub->Verify("hello", sig), IsOk());
}

TEST(Ed25519Test, EveryFlippedBitIsRejected) {
  COMITY_ASSERT_OK_AND_ASSIGN(auto key, SigningKey::Generate());
  const std::string message = "preserve logs of 203.0.113.7";
  COMITY_ASSERT_OK_AND_ASSIGN(std::string sig, key->Sign(message));
  COMITY_ASSERT_OK_AND_ASSIGN(auto pub, VerifyingKey::FromRaw(key->public_key()));
  for (size_t bit = 0; bit < message.size() * 8; ++bit) {
    std::string m = message;
    m[bit / 8] ^= static_cast<char>(1 << (bit % 8));
    EXPECT_THAT(pub->Verify(m, sig), StatusIs(absl::StatusCode::kUnauthenticated))
        << "message bit " << bit;
  }
  for (size_t bit = 0; bit < sig.size() * 8; ++bit) {
    std::string s = sig;
    s[bit / 8] ^= static_cast<char>(1 << (bit % 8));
    EXPECT_THAT(pub->Verify(message, s), StatusIs(absl::StatusCode::kUnauthenticated))
        << "signature bit " << bit;
  }
}

TEST(Ed25519Test, WrongKeyIsRejected) {
  COMITY_ASSERT_OK_AND_ASSIGN(auto key, SigningKey::Generate());
  COMITY_ASSERT_OK_AND_ASSIGN(auto other, SigningKey::Generate());
  COMITY_ASSERT_OK_AND_ASSIGN(std::string sig, key->Sign("m"));
  COMITY_ASSERT_OK_AND_ASSIGN(auto pub, VerifyingKey::FromRaw(other->public_key()));
  EXPECT_THAT(pub->Verify("m", sig), StatusIs(absl::StatusCode::kUnauthenticated));
}

TEST(Ed25519Test, MalformedInputsAreErrorsNotCrashes) {
  COMITY_ASSERT_OK_AND_ASSIGN(auto key, SigningKey::Generate());
  COMITY_ASSERT_OK_AND_ASSIGN(auto pub, VerifyingKey::FromRaw(key->public_key()));
  EXPECT_THAT(pub->Verify("m", ""), StatusIs(absl::StatusCode::kUnauthenticated,
                                             HasSubstr("0 bytes")));
  EXPECT_THAT(pub->Verify("m", std::string(65, 'x')),
              StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(VerifyingKey::FromRaw("short"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(SigningKey::FromPem("not a key"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ed25519")));
}

TEST(Ed25519Test, RejectsNonEd25519PrivateKey) {
  // A P-256 key, made now: never a committed key.
  EVP_PKEY* ec = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  ASSERT_NE(ec, nullptr);
  BIO* bio = BIO_new(BIO_s_mem());
  ASSERT_EQ(PEM_write_bio_PrivateKey(bio, ec, nullptr, nullptr, 0, nullptr, nullptr), 1);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string ec_pem(data, static_cast<size_t>(len));
  BIO_free(bio);
  EVP_PKEY_free(ec);
  EXPECT_THAT(SigningKey::FromPem(ec_pem),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not an Ed25519")));
}

TEST(Ed25519Test, PrivateKeyPemRoundTrip) {
  COMITY_ASSERT_OK_AND_ASSIGN(auto key, SigningKey::Generate());
  COMITY_ASSERT_OK_AND_ASSIGN(std::string pem, key->PrivateKeyPem());
  COMITY_ASSERT_OK_AND_ASSIGN(auto again, SigningKey::FromPem(pem));
  EXPECT_EQ(again->public_key(), key->public_key());
}

TEST(Sha256Test, KnownAnswers) {
  EXPECT_EQ(HexEncode(Sha256("")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(HexEncode(Sha256("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(RandomUuidTest, IsVersion4AndUnique) {
  std::string a = RandomUuid();
  std::string b = RandomUuid();
  EXPECT_NE(a, b);
  ASSERT_EQ(a.size(), 36u);
  EXPECT_EQ(a[14], '4');
  EXPECT_THAT(std::string("89ab"), HasSubstr(std::string(1, a[19])));
}

}  // namespace
}  // namespace comity

namespace comity {
namespace {

// One format everywhere (docs/keys.md): sha256: and the SHA-256 of the raw
// 32-byte public key in lower-case hex.
TEST(KeyFingerprintTest, IsSha256HexOfTheRawPublicKey) {
  EXPECT_EQ(KeyFingerprint(std::string(32, '\0')),
            "sha256:66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925");
  auto key = SigningKey::Generate();
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(KeyFingerprint((*key)->public_key()),
            "sha256:" + HexEncode(Sha256((*key)->public_key())));
}

}  // namespace
}  // namespace comity
