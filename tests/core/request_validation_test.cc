#include "server/core/request_validation.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/parties.h"
#include "tests/testing/status_matchers.h"

namespace comity {
namespace {

using ::comity::testing::IsOk;
using ::comity::testing::StatusIs;
using ::testing::HasSubstr;

v1::RequestBody ValidBody() {
  v1::RequestBody b;
  b.set_id("0f8fad5b-d9cb-469f-a165-70867728950e");
  b.set_requesting_party("FR");
  b.set_requested_party("JP");
  b.mutable_created_at()->set_seconds(1795000000);
  b.set_assistance_type(v1::PRESERVATION);
  b.mutable_offence()->set_category(v1::DATA_INTERFERENCE);
  b.set_urgency(v1::URGENT);
  b.mutable_particulars()->set_requesting_authority("Parquet de Paris");
  b.mutable_particulars()->set_facts_summary("ransomware");
  return b;
}

TEST(PartiesTest, Iso3166Alpha2) {
  for (const char* code : {"FR", "JP", "GB", "US", "DE", "AU", "CZ", "AT", "UA", "BR"}) {
    EXPECT_TRUE(IsPartyCode(code)) << code;
  }
  for (const char* code : {"", "fr", "ZZ", "UK", "EU", "FRA", "F", "XK"}) {
    EXPECT_FALSE(IsPartyCode(code)) << code;
  }
  EXPECT_THAT(CheckPartyCode("requested_party", "UK"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("requested_party 'UK' is not an ISO 3166-1")));
}

TEST(PartiesTest, CanonicalUuid) {
  EXPECT_TRUE(IsCanonicalUuid("0f8fad5b-d9cb-469f-a165-70867728950e"));
  EXPECT_FALSE(IsCanonicalUuid("0F8FAD5B-D9CB-469F-A165-70867728950E"));
  EXPECT_FALSE(IsCanonicalUuid("0f8fad5bd9cb469fa16570867728950e"));
  EXPECT_FALSE(IsCanonicalUuid("0f8fad5b-d9cb-469f-a165-70867728950g"));
}

TEST(RequestValidationTest, ValidBodyPasses) { EXPECT_THAT(ValidateRequestBody(ValidBody()), IsOk()); }

TEST(RequestValidationTest, EachMissingFieldIsNamed) {
  struct Case {
    const char* field;
    void (*mutate)(v1::RequestBody*);
  };
  const Case cases[] = {
      {"id", [](v1::RequestBody* b) { b->set_id("42"); }},
      {"requesting_party", [](v1::RequestBody* b) { b->set_requesting_party("XX"); }},
      {"requested_party", [](v1::RequestBody* b) { b->clear_requested_party(); }},
      {"same party", [](v1::RequestBody* b) { b->set_requested_party("FR"); }},
      {"created_at", [](v1::RequestBody* b) { b->clear_created_at(); }},
      {"assistance_type", [](v1::RequestBody* b) { b->clear_assistance_type(); }},
      {"assistance_type",
       [](v1::RequestBody* b) { b->set_assistance_type(static_cast<v1::AssistanceType>(99)); }},
      {"offence.category", [](v1::RequestBody* b) { b->mutable_offence()->clear_category(); }},
      {"offence.description",
       [](v1::RequestBody* b) { b->mutable_offence()->set_category(v1::OTHER); }},
      {"requesting_authority",
       [](v1::RequestBody* b) { b->mutable_particulars()->clear_requesting_authority(); }},
      {"facts_summary",
       [](v1::RequestBody* b) { b->mutable_particulars()->clear_facts_summary(); }},
      {"related_request_ids", [](v1::RequestBody* b) { b->add_related_request_ids("nope"); }},
      {"itself", [](v1::RequestBody* b) { b->add_related_request_ids(b->id()); }},
      {"custodian_or_location",
       [](v1::RequestBody* b) {
         b->mutable_particulars()->set_custodian_or_location(std::string(5000, 'x'));
       }},
  };
  for (const Case& c : cases) {
    v1::RequestBody b = ValidBody();
    c.mutate(&b);
    EXPECT_THAT(ValidateRequestBody(b),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.field)))
        << c.field;
  }
}

TEST(RequestValidationTest, OtherOffenceWithDescriptionPasses) {
  v1::RequestBody b = ValidBody();
  b.mutable_offence()->set_category(v1::OTHER);
  b.mutable_offence()->set_description("money laundering");
  EXPECT_THAT(ValidateRequestBody(b), IsOk());
}

TEST(RequestValidationTest, DraftMustLeaveNodeFieldsEmpty) {
  v1::RequestBody d = ValidBody();
  EXPECT_THAT(ValidateDraft(d), StatusIs(absl::StatusCode::kInvalidArgument,
                                         HasSubstr("the node fills them in")));
  d.clear_id();
  d.clear_created_at();
  d.clear_requesting_party();
  EXPECT_THAT(ValidateDraft(d), IsOk());
}

}  // namespace
}  // namespace comity
