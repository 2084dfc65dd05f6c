#include "tests/testing/postgres_test_db.h"

#include <libpq-fe.h>

#include <cstdlib>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"

namespace comity::testing {
namespace {

// Runs `sql` on a new connection to `url`.
absl::Status ExecOn(const std::string& url, const std::string& sql) {
  PGconn* conn = PQconnectdb(url.c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    absl::Status st = absl::UnavailableError(
        absl::StrCat("cannot connect to the test PostgreSQL server: ",
                     absl::StripTrailingAsciiWhitespace(PQerrorMessage(conn))));
    PQfinish(conn);
    return st;
  }
  PGresult* res = PQexec(conn, sql.c_str());
  absl::Status st;
  if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
    st = absl::InternalError(absl::StrCat(
        sql, ": ", absl::StripTrailingAsciiWhitespace(PQresultErrorMessage(res))));
  }
  PQclear(res);
  PQfinish(conn);
  return st;
}

// `url` with its database replaced: a dbname query parameter overrides the
// path of a libpq URL.
std::string WithDatabase(const std::string& url, const std::string& name) {
  return absl::StrCat(url, url.find('?') == std::string::npos ? "?" : "&", "dbname=", name);
}

}  // namespace

std::string PostgresTestDb::ServerUrl() {
  const char* url = std::getenv("COMITY_TEST_POSTGRES");
  return url != nullptr ? url : "";
}

absl::StatusOr<std::unique_ptr<PostgresTestDb>> PostgresTestDb::Create() {
  const std::string server = ServerUrl();
  if (server.empty()) return absl::FailedPreconditionError(kSkipMessage);
  std::random_device rd;
  const std::string name = absl::StrFormat("comity_test_%08x%08x", rd(), rd());
  // template0 and the C locale: an empty UTF-8 database whatever the
  // server's defaults.
  absl::Status st = ExecOn(server, absl::StrCat("CREATE DATABASE ", name,
                                                " TEMPLATE template0 ENCODING 'UTF8' "
                                                "LC_COLLATE 'C' LC_CTYPE 'C'"));
  if (!st.ok()) return st;
  return std::unique_ptr<PostgresTestDb>(new PostgresTestDb(name, WithDatabase(server, name)));
}

PostgresTestDb::~PostgresTestDb() {
  ExecOn(ServerUrl(), absl::StrCat("DROP DATABASE IF EXISTS ", name_, " WITH (FORCE)"))
      .IgnoreError();
}

absl::Status PostgresTestDb::Exec(const std::string& sql) const { return ExecOn(url_, sql); }

}  // namespace comity::testing
