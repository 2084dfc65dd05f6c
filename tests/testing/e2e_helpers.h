// Helpers for end-to-end tests: capture the nodes' log lines, run the CLI
// in-process, parse its JSON.
#ifndef COMITY_TESTS_TESTING_E2E_HELPERS_H_
#define COMITY_TESTS_TESTING_E2E_HELPERS_H_

#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/cli.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "server/util/log.h"

namespace comity::testing {

// Collects log lines while it lives.
class LogCapture {
 public:
  LogCapture() {
    SetLogSinkForTesting([this](const std::string& line) {
      absl::MutexLock lock(&mu_);
      lines_.push_back(line);
    });
  }
  ~LogCapture() { SetLogSinkForTesting(nullptr); }
  // True if one line contains both strings.
  bool Contains(const std::string& a, const std::string& b) {
    absl::MutexLock lock(&mu_);
    for (const auto& l : lines_) {
      if (l.find(a) != std::string::npos && l.find(b) != std::string::npos) return true;
    }
    return false;
  }
  std::string All() {
    absl::MutexLock lock(&mu_);
    std::string all;
    for (const auto& l : lines_) absl::StrAppend(&all, l, "\n");
    return all;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> lines_;
};

struct CliResult {
  int code;
  std::string out;
  std::string err;
};

// Runs `comity ARGS` in-process, with an empty environment.
inline CliResult Cli(const std::vector<std::string>& args) {
  std::ostringstream out, err;
  int code = RunCli(args, [](const std::string&) { return std::string(); }, out, err);
  return {code, out.str(), err.str()};
}

// `comity --connect CONNECT submit ... --json`: a preservation request to
// `to` with every field filled in.
inline std::vector<std::string> SubmitPreservationArgs(const std::string& connect,
                                                       const std::string& to) {
  return {"--connect",
          connect,
          "submit",
          "--to",
          to,
          "--type",
          "PRESERVATION",
          "--offence",
          "DATA_INTERFERENCE",
          "--penalty-months",
          "60",
          "--authority",
          "Parquet de Paris",
          "--facts",
          "ransomware",
          "--data-sought",
          "logs",
          "--relation",
          "C2",
          "--custodian",
          "Hosting KK",
          "--necessity",
          "rotation",
          "--intent-mla",
          "--json"};
}

inline google::protobuf::Struct ParseJson(const std::string& json) {
  google::protobuf::Struct s;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, &s).ok()) << json;
  return s;
}

}  // namespace comity::testing

#endif  // COMITY_TESTS_TESTING_E2E_HELPERS_H_
