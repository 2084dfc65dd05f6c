// A PostgreSQL database of its own for one test (or one node of a test
// network), created on the server named by $COMITY_TEST_POSTGRES (a libpq
// URL of a role that may CREATE DATABASE; tests/store/postgres_server.sh
// starts one) under a random name, and dropped on destruction, so that
// tests running in parallel (ctest -j) never share one.
//
//   if (PostgresTestDb::ServerUrl().empty()) GTEST_SKIP() << PostgresTestDb::kSkipMessage;
//   COMITY_ASSERT_OK_AND_ASSIGN(auto db, PostgresTestDb::Create());
//   auto store = OpenPostgresStore(db->url());
#ifndef COMITY_TESTS_TESTING_POSTGRES_TEST_DB_H_
#define COMITY_TESTS_TESTING_POSTGRES_TEST_DB_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace comity::testing {

class PostgresTestDb {
 public:
  static constexpr const char* kSkipMessage =
      "COMITY_TEST_POSTGRES is not set: PostgreSQL cases skipped (tests/run.sh sets it; or "
      "export COMITY_TEST_POSTGRES=$(tests/store/postgres_server.sh start DIR))";

  // $COMITY_TEST_POSTGRES, or empty if unset.
  static std::string ServerUrl();
  // Creates a fresh, empty database. Unavailable if the server cannot be
  // reached or refuses.
  static absl::StatusOr<std::unique_ptr<PostgresTestDb>> Create();
  ~PostgresTestDb();  // Drops the database (WITH (FORCE)).

  // A libpq URL of the new database.
  const std::string& url() const { return url_; }
  const std::string& name() const { return name_; }
  // Runs SQL on the database on a connection of its own (behind the
  // store's back, as an intruder or another build would).
  absl::Status Exec(const std::string& sql) const;

 private:
  PostgresTestDb(std::string name, std::string url) : name_(std::move(name)), url_(std::move(url)) {}
  std::string name_;
  std::string url_;
};

}  // namespace comity::testing

#endif  // COMITY_TESTS_TESTING_POSTGRES_TEST_DB_H_
