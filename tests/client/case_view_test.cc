#include "client/case_view.h"

#include <string>

#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace comity {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

const std::string kShaA(32, 'a');
const std::string kShaB(32, 'b');

v1::SignedEnvelope Step(const v1::Transition& t) {
  v1::SignedEnvelope env;
  env.set_payload_type("comity.v1.Transition");
  env.set_payload(t.SerializeAsString());
  env.set_signer_party(t.party());
  env.set_key_id(t.party() + "-1");
  return env;
}

v1::Transition Respond(uint32_t sequence, const std::string& name, const std::string& sha,
                       std::vector<std::string> conditions) {
  v1::Transition t;
  t.set_sequence(sequence);
  t.set_action(v1::RESPOND);
  t.set_party("JP");
  v1::EvidenceFile* f = t.add_evidence();
  f->set_name(name);
  f->set_sha256(sha);
  f->set_size(100);
  for (const std::string& c : conditions) t.add_release_conditions(c);
  return t;
}

// FR's record of a case JP answered twice: file A under two conditions,
// file B under none, which FR holds.
v1::RequestRecord Answered(v1::Direction direction) {
  v1::RequestRecord r;
  r.set_direction(direction);
  r.set_case_state(v1::CASE_PARTLY_EXECUTED);
  v1::Transition accept;
  accept.set_sequence(1);
  accept.set_action(v1::ACCEPT);
  accept.set_party("JP");
  *r.add_transitions() = Step(accept);
  *r.add_transitions() =
      Step(Respond(2, "a.img", kShaA, {"only case 1", "no onward transfer"}));
  *r.add_transitions() = Step(Respond(3, "b.csv", kShaB, {}));
  return r;
}

struct Evidence {
  google::protobuf::RepeatedPtrField<v1::StoredEvidence> stored;
  google::protobuf::RepeatedPtrField<v1::PendingEvidenceStatus> pending;
};

Evidence BHeldAPending() {
  Evidence e;
  v1::StoredEvidence* s = e.stored.Add();
  s->set_sha256(kShaB);
  s->set_path("/var/lib/comity/evidence/bb");
  v1::PendingEvidenceStatus* p = e.pending.Add();
  p->set_sha256(kShaA);
  p->set_name("a.img");
  return e;
}

TEST(CaseViewTest, PendingConditionsHoldBackTheirFilesOnly) {
  KeyRing ring;  // Empty: every signature fails, the rest still reads.
  Evidence ev = BHeldAPending();
  CaseView view = BuildCaseView(Answered(v1::OUTGOING), ring, ev.stored, ev.pending);
  ASSERT_EQ(view.steps.size(), 3u);
  EXPECT_FALSE(view.steps[0].signature.ok());
  EXPECT_EQ(view.steps[1].transition.action(), v1::RESPOND);
  ASSERT_EQ(view.conditions.size(), 2u);
  EXPECT_EQ(view.conditions[0].text, "only case 1");
  EXPECT_EQ(view.conditions[0].step, 2u);
  EXPECT_EQ(view.conditions[0].party, "JP");
  EXPECT_FALSE(view.conditions[0].accepted);
  EXPECT_THAT(view.conditions[0].blocks, ElementsAre("a.img"));
  EXPECT_EQ(view.PendingConditions(), 2u);
  ASSERT_EQ(view.evidence.size(), 2u);
  EXPECT_EQ(view.evidence[0].state, EvidenceState::kAwaitingConditions);
  EXPECT_THAT(view.evidence[0].pending_conditions,
              ElementsAre("only case 1", "no onward transfer"));
  EXPECT_EQ(view.evidence[1].state, EvidenceState::kVerified);
  EXPECT_EQ(view.evidence[1].path, "/var/lib/comity/evidence/bb");
  EXPECT_THAT(view.evidence[1].pending_conditions, IsEmpty());

  // The requested side holds A back, and has released B.
  CaseView jp = BuildCaseView(Answered(v1::INCOMING), ring, {}, {});
  EXPECT_EQ(jp.evidence[0].state, EvidenceState::kHeldBack);
  EXPECT_EQ(jp.evidence[1].state, EvidenceState::kReleased);
}

TEST(CaseViewTest, AnAcceptanceReleasesAndNamesItsStep) {
  KeyRing ring;
  v1::RequestRecord r = Answered(v1::OUTGOING);
  // FR's acceptance, signed and queued, not numbered yet.
  v1::TransitionProposal p;
  p.set_action(v1::ACCEPT_CONDITIONS);
  p.add_accepted_conditions("only case 1");
  p.add_accepted_conditions("no onward transfer");
  v1::SignedEnvelope queued;
  queued.set_payload(p.SerializeAsString());
  *r.add_queued_proposals() = queued;
  Evidence ev = BHeldAPending();
  CaseView view = BuildCaseView(r, ring, ev.stored, ev.pending);
  EXPECT_TRUE(view.conditions[0].acceptance_queued);
  EXPECT_FALSE(view.conditions[0].accepted);
  EXPECT_EQ(view.evidence[0].state, EvidenceState::kAwaitingConditions);

  // Numbered as step 4: accepted, and A is fetched.
  r.clear_queued_proposals();
  v1::Transition accept;
  accept.set_sequence(4);
  accept.set_action(v1::ACCEPT_CONDITIONS);
  accept.set_party("FR");
  accept.add_accepted_conditions("only case 1");
  accept.add_accepted_conditions("no onward transfer");
  *r.add_transitions() = Step(accept);
  view = BuildCaseView(r, ring, ev.stored, ev.pending);
  EXPECT_EQ(view.PendingConditions(), 0u);
  EXPECT_TRUE(view.conditions[1].accepted);
  EXPECT_EQ(view.conditions[1].accepted_in_step, 4u);
  EXPECT_THAT(view.conditions[1].blocks, IsEmpty());
  EXPECT_EQ(view.evidence[0].state, EvidenceState::kFetching);

  // Given up after too many attempts.
  ev.pending[0].set_gave_up(true);
  ev.pending[0].set_attempts(8);
  ev.pending[0].set_last_error("DEADLINE_EXCEEDED");
  view = BuildCaseView(r, ring, ev.stored, ev.pending);
  EXPECT_EQ(view.evidence[0].state, EvidenceState::kGivenUp);
  EXPECT_EQ(view.evidence[0].attempts, 8u);
}

TEST(CaseViewTest, JsonHasEveryStepConditionAndFile) {
  KeyRing ring;
  Evidence ev = BHeldAPending();
  CaseView view = BuildCaseView(Answered(v1::OUTGOING), ring, ev.stored, ev.pending);
  JsonValue object = JsonValue::Object();
  AddCaseJson(view, &object);
  google::protobuf::Struct s;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(object.Dump(), &s).ok())
      << object.Dump();
  const auto& f = s.fields();
  ASSERT_EQ(f.at("steps").list_value().values_size(), 3);
  const auto& respond = f.at("steps").list_value().values(1).struct_value().fields();
  EXPECT_EQ(respond.at("action").string_value(), "RESPOND");
  EXPECT_EQ(
      respond.at("signature").struct_value().fields().at("signer_party").string_value(),
      "JP");
  EXPECT_FALSE(
      respond.at("signature").struct_value().fields().at("verified").bool_value());
  EXPECT_EQ(respond.at("release_conditions").list_value().values_size(), 2);
  EXPECT_EQ(f.at("pending_conditions").number_value(), 2);
  const auto& c = f.at("conditions").list_value().values(1).struct_value().fields();
  EXPECT_EQ(c.at("text").string_value(), "no onward transfer");
  EXPECT_EQ(c.at("state").string_value(), "pending");
  const auto& e = f.at("evidence").list_value().values(0).struct_value().fields();
  EXPECT_EQ(e.at("state").string_value(), "awaiting_conditions");
  std::string hex_a;
  for (int i = 0; i < 32; ++i) hex_a += "61";  // 'a'
  EXPECT_EQ(e.at("sha256").string_value(), hex_a);
  EXPECT_EQ(f.at("evidence")
                .list_value()
                .values(1)
                .struct_value()
                .fields()
                .at("state")
                .string_value(),
            "verified");
  EXPECT_EQ(f.at("queued_proposals").list_value().values_size(), 0);
}

}  // namespace
}  // namespace comity
