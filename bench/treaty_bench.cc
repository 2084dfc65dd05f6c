// Treaty engine benchmark: a generated library of 200 parties and 50
// instruments (10 multilateral conventions with reservations and a general
// procedure, 38 bilateral treaties, 2 political declarations), written to
// files and loaded like the real one; then assessments of random pairs.
//
//   build/bin/treaty_bench                 # Google Benchmark output
//   build/bin/treaty_bench --benchmark_repetitions=10 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdlib>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/core/parties.h"
#include "server/treaty/engine.h"
#include "server/treaty/library.h"
#include "server/util/files.h"

namespace comity {
namespace {

constexpr int kParties = 200;
constexpr int kMultilateral = 10;
constexpr int kBilateral = 38;
constexpr int kDeclarations = 2;

std::vector<std::string> PartyCodes() {
  std::vector<std::string> codes;
  for (char a = 'A'; a <= 'Z'; ++a) {
    for (char b = 'A'; b <= 'Z'; ++b) {
      std::string c{a, b};
      if (IsPartyCode(c) && codes.size() < kParties) codes.push_back(c);
    }
  }
  return codes;
}

std::string Date(int year, int month, int day) {
  return absl::StrFormat("%04d-%02d-%02d", year, month, day);
}

std::string Multilateral(int n, const std::vector<std::string>& codes, std::mt19937* rng) {
  std::string t = absl::StrCat(
      "id: \"MULTI", n, "\"\nkind: MULTILATERAL_TREATY\nin_force: \"2004-07-01\"\n",
      "entry_into_force_rule { min_consents: 5 months_after: 3 first_day_of_following_month: "
      "true }\n");
  for (const char* a : {"24", "25", "27", "29", "30", "31", "33", "34", "42"}) {
    absl::StrAppend(&t, "articles { number: \"", a, "\" }\n");
  }
  absl::StrAppend(&t,
                  "general_procedure { basis: \"Art 27(1)\" refusal_grounds: [POLITICAL_OFFENCE, "
                  "ESSENTIAL_INTERESTS] duties { basis: \"Art 27(7)\" text: \"reasons\" } }\n");
  const char* types[] = {"EXTRADITION", "MUTUAL_ASSISTANCE", "PRESERVATION",
                         "TRAFFIC_DATA_DISCLOSURE", "STORED_DATA_ACCESS", "REALTIME_TRAFFIC",
                         "INTERCEPTION", "SUBSCRIBER_INFORMATION"};
  for (const char* type : types) {
    bool discretionary = std::string(type) == "INTERCEPTION";
    absl::StrAppend(&t, "provisions { assistance_type: ", type, " obligation: ",
                    discretionary ? "DISCRETIONARY" : "BINDING",
                    " basis: \"Art 25(1)\" refusal_grounds: [DOMESTIC_LAW, DUAL_CRIMINALITY]",
                    " dual_criminality_required: true uses_general_procedure: true",
                    " excluded_for_convention_offences: FISCAL_OFFENCE excluded_basis: \"Art "
                    "25(4)\"",
                    std::string(type) == "PRESERVATION"
                        ? " specific: true deadline_days: 60 deadline_basis: \"Art 29(7)\" "
                          "required_contents { field: \"particulars.necessity\" basis: \"Art "
                          "29(2)(e)\" }"
                        : "",
                    std::string(type) == "EXTRADITION"
                        ? " scope: CONVENTION_OFFENCES min_penalty_months: 12 "
                          "min_penalty_both_parties: true duties { basis: \"Art 24(6)\" text: "
                          "\"prosecute\" }"
                        : "",
                    " }\n");
  }
  absl::StrAppend(&t,
                  "allowed_reservations { id: \"Art 29(4)\" effect { assistance_types: "
                  "PRESERVATION adds_refusal_grounds: DUAL_CRIMINALITY "
                  "only_for_non_convention_offences: true } }\n");
  std::uniform_int_distribution<int> year(2005, 2020), month(1, 12), day(1, 28), coin(0, 3);
  for (const std::string& c : codes) {
    if (coin(*rng) == 0) continue;  // About three quarters of the parties join.
    absl::StrAppend(&t, "parties { party: \"", c, "\" consent: \"",
                    Date(year(*rng), month(*rng), day(*rng)), "\"");
    if (coin(*rng) == 0) {
      absl::StrAppend(&t, " reservations { id: \"Art 29(4)\" made: \"2010-01-01\"",
                      coin(*rng) == 0 ? " withdrawn: \"2019-01-01\"" : "", " }");
    }
    absl::StrAppend(&t, " }\n");
  }
  return t;
}

std::string Bilateral(int n, const std::string& a, const std::string& b) {
  return absl::StrCat(
      "id: \"BI", n, "\"\nkind: BILATERAL_TREATY\ngoverns_procedure: true\n",
      "articles { number: \"1\" }\n",
      "provisions { assistance_type: MUTUAL_ASSISTANCE obligation: BINDING basis: \"Art 1\" "
      "refusal_grounds: [ESSENTIAL_INTERESTS] }\n",
      "provisions { assistance_type: STORED_DATA_ACCESS obligation: BINDING basis: \"Art 1\" }\n",
      "parties { party: \"", a, "\" signed: \"2000-01-01\" entry_into_force: \"2001-01-01\" }\n",
      "parties { party: \"", b, "\" signed: \"2000-01-01\" entry_into_force: \"2001-01-01\" }\n");
}

std::string Declaration(int n, const std::vector<std::string>& codes) {
  std::string t = absl::StrCat("id: \"DECL", n, "\"\nkind: POLITICAL_DECLARATION\n");
  for (const auto& c : codes) absl::StrAppend(&t, "parties { party: \"", c, "\" signed: \"2015-12-30\" }\n");
  return t;
}

// Writes the generated library into a fresh directory; returns its path.
std::string WriteLibrary() {
  std::mt19937 rng(42);
  auto codes = PartyCodes();
  char templ[] = "/tmp/comity-bench-XXXXXX";
  std::string dir = ::mkdtemp(templ);
  for (int i = 0; i < kMultilateral; ++i) {
    (void)WriteFileAtomically(absl::StrCat(dir, "/multi", i, ".textproto"),
                              Multilateral(i, codes, &rng), 0644);
  }
  std::uniform_int_distribution<size_t> pick(0, codes.size() - 1);
  for (int i = 0; i < kBilateral; ++i) {
    std::string a = codes[pick(rng)], b = codes[pick(rng)];
    while (b == a) b = codes[pick(rng)];
    (void)WriteFileAtomically(absl::StrCat(dir, "/bi", i, ".textproto"), Bilateral(i, a, b),
                              0644);
  }
  for (int i = 0; i < kDeclarations; ++i) {
    (void)WriteFileAtomically(absl::StrCat(dir, "/decl", i, ".textproto"), Declaration(i, codes),
                              0644);
  }
  return dir;
}

const std::string& LibraryDir() {
  static const std::string* dir = new std::string(WriteLibrary());
  return *dir;
}

void BM_LoadLibrary(benchmark::State& state) {
  for (auto _ : state) {
    auto lib = TreatyLibrary::LoadDirectory(LibraryDir());
    if (!lib.ok()) state.SkipWithError(std::string(lib.status().message()).c_str());
    benchmark::DoNotOptimize(lib);
  }
}
BENCHMARK(BM_LoadLibrary)->Unit(benchmark::kMillisecond);

void BM_Assess(benchmark::State& state) {
  auto lib = TreatyLibrary::LoadDirectory(LibraryDir());
  if (!lib.ok()) {
    state.SkipWithError(std::string(lib.status().message()).c_str());
    return;
  }
  auto codes = PartyCodes();
  std::mt19937 rng(7);
  std::uniform_int_distribution<size_t> pick(0, codes.size() - 1);
  const v1::AssistanceType types[] = {v1::PRESERVATION, v1::MUTUAL_ASSISTANCE, v1::EXTRADITION,
                                      v1::INTERCEPTION, v1::STORED_DATA_ACCESS};
  std::vector<AssessmentQuery> queries;
  for (int i = 0; i < 1024; ++i) {
    AssessmentQuery q;
    q.requesting_party = codes[pick(rng)];
    do q.requested_party = codes[pick(rng)]; while (q.requested_party == q.requesting_party);
    q.date = absl::CivilDay(2024, 6, 1);
    q.assistance_type = types[i % 5];
    q.offence = i % 3 == 0 ? v1::OTHER : v1::DATA_INTERFERENCE;
    q.penalty_months = 36;
    queries.push_back(q);
  }
  size_t i = 0;
  for (auto _ : state) {
    auto a = Assess(**lib, queries[i++ & 1023]);
    benchmark::DoNotOptimize(a);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Assess)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace comity

BENCHMARK_MAIN();
