// Fuzzes loading a treaty instrument file (server/treaty/library.h:
// TreatyLibrary::FromFiles parses one comity.v1.Instrument in protobuf text
// format and validates it: dates, article references, parties, entry into
// force), and, for a file that loads, the rules engine's use of it
// (server/treaty/engine.h: Assess) for pairs of its parties.
//
// Input: the text of one *.textproto file. Seeds: deploy/treaties/.
#include <dirent.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "comity/v1/request.pb.h"
#include "comity/v1/treaty.pb.h"
#include "server/treaty/engine.h"
#include "server/treaty/library.h"
#include "server/util/files.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  using namespace comity;
  using namespace comity::fuzz;
  InitializeFuzzer([](SeedWriter& seeds) {
    const std::string dir = SourceDir() + "/deploy/treaties";
    DIR* d = ::opendir(dir.c_str());
    Check(d != nullptr, dir);
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (!absl::EndsWith(name, ".textproto")) continue;
      auto text = ReadFile(absl::StrCat(dir, "/", name));
      Check(text.ok(), name);
      seeds.Add(name, *text);
    }
    ::closedir(d);
    seeds.Dictionary(TextFormatTokens(v1::Instrument::descriptor()));
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace comity;
  using namespace comity::fuzz;
  auto lib = TreatyLibrary::FromFiles({{"fuzz.textproto", Bytes(data, size)}});
  if (!lib.ok()) return 0;
  // A loaded instrument is trusted by the engine: use it as a node would.
  (void)(*lib)->Parties();
  v1::RequestBody body;
  body.set_id("0f8fad5b-d9cb-469f-a165-70867728950e");
  body.mutable_created_at()->set_seconds(1798000000);
  body.mutable_offence()->set_category(v1::DATA_INTERFERENCE);
  body.mutable_offence()->set_max_penalty_months(24);
  body.mutable_particulars()->set_requesting_authority("a prosecutor");
  body.mutable_particulars()->set_facts_summary("ransomware");
  body.mutable_particulars()->set_data_sought("logs");
  for (const auto& rec : (*lib)->instruments()) {
    const int n = std::min<int>(static_cast<int>(rec->parties.size()), 3);
    for (int i = 0; i < n; ++i) {
      const PartyRecord& from = rec->parties[i];
      (void)(*lib)->InstrumentsOf(from.status->party());
      (void)FormatDay(from.in_force);
      (void)FormatDay(from.bound_until);
      for (int j = 0; j < n; ++j) {
        if (i == j) continue;
        body.set_requesting_party(from.status->party());
        body.set_requested_party(rec->parties[j].status->party());
        for (int type : {v1::PRESERVATION, v1::MUTUAL_ASSISTANCE, v1::EXTRADITION}) {
          body.set_assistance_type(static_cast<v1::AssistanceType>(type));
          for (Day day : {from.in_force, from.signed_on, Day{20000}}) {
            if (day == kNever) continue;
            absl::CivilDay civil = absl::CivilDay(1970, 1, 1) + day;
            (void)Assess(**lib, QueryForRequest(body, civil));
          }
        }
      }
    }
  }
  return 0;
}
