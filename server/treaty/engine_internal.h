// Internal to server/treaty/: the rules engine's steps and the state they
// share while one assessment is built. Nothing outside server/treaty/ may
// include this header; the API is engine.h. The steps are those of
// docs/treaties.md, "The decision procedure", in the order Assessor::Run
// calls them:
//   engine.cc              the query's parties, the assessment's heading
//   engine_instruments.cc  steps 0-2: instruments that bind both parties on
//                          the date and provide for this assistance
//   engine_scope.cc        steps 3-5: scope and thresholds, precedence, the
//                          governing instrument
//   engine_grounds.cc      steps 6-9: grounds, reservations, the request's
//                          form, deadlines and duties, the channel
//
//   // Assess (engine.cc), once the query is checked:
//   return treaty_internal::Assessor::Run(library, query, std::move(parties));
#ifndef COMITY_SERVER_TREATY_ENGINE_INTERNAL_H_
#define COMITY_SERVER_TREATY_ENGINE_INTERNAL_H_

#include <bitset>
#include <string>
#include <utility>
#include <vector>

#include "comity/v1/assessment.pb.h"
#include "server/treaty/engine.h"
#include "server/treaty/library.h"

namespace comity::treaty_internal {

inline constexpr int kGroundCount = 12;
// Indexed by v1::RefusalGround.
using Grounds = std::bitset<kGroundCount>;

// A provision of an instrument in force that provides for the request.
struct Candidate {
  const InstrumentRecord* inst;
  const v1::Provision* provision;
  int provision_index;  // Into inst->content_paths.
};

// The parties of a query as the engine assesses them: a territory with its
// own code stands for its state.
struct Parties {
  std::string from;            // The requesting state.
  std::string to;              // The requested state.
  std::string from_territory;  // The requesting party if a territory, else empty.
  std::string to_territory;    // The requested party if a territory, else empty.
};

// "ETS185 Art 29(2)": `article` of `inst`.
std::string Cite(const InstrumentRecord& inst, const std::string& article);

// One assessment in the making. Each step reads what the earlier ones found
// and adds to the assessment; the order of its notes, considered
// instruments and grounds is part of the result (signed records compare
// them). Used once, by one thread.
class Assessor {
 public:
  // The assessment of `query`, which Assess has checked, with `parties`
  // resolved from it. Never fails: an outcome that the library
  // cannot decide is UNKNOWN_PARTY.
  static v1::Assessment Run(const TreatyLibrary& library, const AssessmentQuery& query,
                            Parties parties);

 private:
  // `library` and `query` must outlive the Assessor.
  Assessor(const TreatyLibrary& library, const AssessmentQuery& query, Parties parties);

  // engine.cc: the heading and the territories' notes.
  void Start();
  void Note(std::string text);
  // Adds `inst` to the considered instruments, or changes its role and
  // reason if it is there already.
  void Consider(const InstrumentRecord& inst, v1::InstrumentRole role, std::string why);

  // engine_instruments.cc. Step 0: false if a party is unknown to the
  // library (the assessment is then complete).
  bool PartiesKnown();
  // Step 1: in_force_, political_, unknown_standing_.
  void FindInForce();
  void ConsiderInstrument(const InstrumentRecord& inst);
  // True if the standing of a party to `inst` on the day is unknown (said
  // so); `inst` is then not considered further.
  bool StandingUnknown(const InstrumentRecord& inst, const PartyRecord& pf,
                       const PartyRecord& pt);
  // Step 2: candidates_; false if there are none.
  bool FindCandidates();
  void AddCandidate(const InstrumentRecord& inst);
  // The note of a reservation of the requested party that takes the route
  // of `p` away, or empty.
  std::string RemovedRoute(const InstrumentRecord& inst, const v1::Provision& p) const;
  // The outcome when no instrument in force provides for the request.
  void PoliticalOnly();
  // No conclusion where the outcome could depend on a standing the library
  // does not know.
  void UnknownOutcome();

  // engine_scope.cc. Step 3: viable_; false if none is (the assessment is
  // then complete).
  bool CheckScope();
  // Why `c` does not cover the request (its scope, a penalty threshold,
  // dual criminality), or empty.
  std::string ScopeExclusion(const Candidate& c);
  // Step 4: supplements_, replaced_, kept_.
  void ApplyPrecedence();
  bool InForceHas(const std::string& id) const;
  // Why `i` supplements another instrument in force, or nullptr.
  const std::string* SupplementReason(const InstrumentRecord* i) const;
  // Step 5: proc_, floor_, other_route_, deciding_, and what they decide.
  void ChooseGoverning();
  void RecordGoverning();
  void RecordOthers();

  // engine_grounds.cc. Step 6: refusal and postponement grounds.
  void CollectGrounds();
  void ExcludeGrounds();
  void ApplyDualCriminality();
  void ApplyReservations();
  void RecordGrounds();
  // Step 7: the request's own form.
  void CheckForm();
  // Step 8: deadlines, duties, the provision's own notes.
  void AddDeadlinesAndDuties();
  // Step 9: the channel.
  void ChooseChannel();
  // The channel that an instrument supplementing the procedure instrument
  // sets (*channel_inst is then that instrument), else the procedure
  // instrument's own.
  const v1::ChannelRule* ProcedureChannel(const InstrumentRecord** channel_inst) const;
  void ApplyChannelDeclarations(const InstrumentRecord& channel_inst,
                                const v1::ChannelRule& channel);

  const TreatyLibrary& library_;
  const AssessmentQuery& q_;
  const std::string from_, to_;                      // States.
  const std::string from_territory_, to_territory_;  // Empty for a state.
  const Day day_;
  v1::AssistanceType type_;  // The deciding provision's, from step 5 on.
  const std::string type_name_;
  const bool convention_offence_;
  v1::Assessment a_;

  // Step 1.
  std::vector<const InstrumentRecord*> in_force_, political_;
  std::vector<std::string> unknown_standing_;  // "ETS185: NO".
  // Step 2.
  std::vector<Candidate> candidates_;
  // Step 3.
  std::vector<Candidate> viable_;
  // Step 4.
  // (who, why): each instrument that supplements another in force.
  std::vector<std::pair<const InstrumentRecord*, std::string>> supplements_;
  std::vector<const InstrumentRecord*> replaced_;
  std::vector<Candidate> kept_;
  // Step 5: into kept_, which does not change after step 4.
  const Candidate* proc_ = nullptr;   // Supplies procedure.
  const Candidate* floor_ = nullptr;  // A multilateral convention's own article.
  const Candidate* other_route_ = nullptr;
  const Candidate* deciding_ = nullptr;
  // Step 6.
  Grounds grounds_, postpone_;
  const v1::GeneralProcedure* general_ = nullptr;  // Art 27, where it applies.
};

}  // namespace comity::treaty_internal

#endif  // COMITY_SERVER_TREATY_ENGINE_INTERNAL_H_
