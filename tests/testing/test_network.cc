#include "tests/testing/test_network.h"

#include <grpcpp/grpcpp.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "server/util/files.h"
#include "server/util/hex.h"

namespace comity::testing {

std::string SourceDir() { return COMITY_SOURCE_DIR; }

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string templ = absl::StrCat(base != nullptr ? base : "/tmp", "/comity-test-XXXXXX");
  char* made = ::mkdtemp(templ.data());
  if (made == nullptr) {
    ADD_FAILURE() << "mkdtemp failed";
    return;
  }
  path_ = made;
}

TempDir::~TempDir() {
  if (!path_.empty()) RunShell(absl::StrCat("rm -rf '", path_, "'"));
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return names;
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

int PickUnusedPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

ListeningSocket::ListeningSocket(bool reuse_port) {
  fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  if (reuse_port) {
    EXPECT_EQ(::setsockopt(fd_, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)), 0);
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  EXPECT_EQ(::listen(fd_, 16), 0);
  EXPECT_EQ(::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  port_ = ntohs(addr.sin_port);
}

ListeningSocket::~ListeningSocket() { ::close(fd_); }

std::shared_ptr<grpc::Channel> MtlsChannel(int port, const std::string& ca_file,
                                           const std::string& cert_file,
                                           const std::string& key_file,
                                           const grpc::ChannelArguments& args) {
  grpc::SslCredentialsOptions opts;
  opts.pem_root_certs = ReadFile(ca_file).value_or("");
  if (!cert_file.empty()) {
    opts.pem_cert_chain = ReadFile(cert_file).value_or("");
    opts.pem_private_key = ReadFile(key_file).value_or("");
  }
  return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port), grpc::SslCredentials(opts),
                                   args);
}

int TestNetwork::PickPort() {
  // Ports handed out in this process: a node binds its port only when it
  // starts, so until then the kernel may give the same one again.
  static absl::Mutex mu(absl::kConstInit);
  static auto* picked = new std::set<int>();
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const int port = PickUnusedPort();
    absl::MutexLock lock(&mu);
    if (port != 0 && picked->insert(port).second) return port;
  }
  ADD_FAILURE() << "no free loopback port left to pick";
  return 0;
}

int RunShell(const std::string& command) {
  int rc = std::system(command.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

TestNetwork::TestNetwork(const std::vector<std::string>& parties) : parties_(parties) {
  std::string cmd = absl::StrCat(SourceDir(), "/certs/make-network.sh '", dir(), "'");
  for (const auto& p : parties) absl::StrAppend(&cmd, " ", p);
  absl::StrAppend(&cmd, " --operators alice:submitter+reviewer,bob:reviewer+approver,carol:auditor,dave,erin:submitter+approver "
                  ">/dev/null");
  EXPECT_EQ(RunShell(cmd), 0) << cmd;
  for (const auto& p : parties) {
    peer_ports_[p] = PickPort();
    operator_ports_[p] = PickPort();
  }
  for (const auto& p : parties) {
    std::string c = absl::StrCat(
        "party: \"", p, "\"\n", "peer_listen_address: \"127.0.0.1:", peer_ports_[p], "\"\n",
        "operator_listen_address: \"127.0.0.1:", operator_ports_[p], "\"\n",
        "data_dir: \"data\"\n", "treaties_dir: \"", SourceDir(), "/deploy/treaties\"\n",
        "tls { cert_file: \"node.pem\" key_file: \"node.key\" operator_ca_file: \"ca.pem\" }\n",
        "signing_key { key_id: \"", p, "-1\" private_key_file: \"signing.key\" }\n",
        "delivery { attempt_timeout_ms: 2000 retry_initial_ms: 100 retry_max_ms: 400 }\n",
        "approval { assistance_types: [EXTRADITION, INTERCEPTION] }\n");
    if (!PostgresTestDb::ServerUrl().empty()) {
      auto db = PostgresTestDb::Create();
      EXPECT_TRUE(db.ok()) << db.status();
      if (db.ok()) {
        absl::StrAppend(&c, "database: \"", (*db)->url(), "\"\n");
        databases_[p] = *std::move(db);
      }
    }
    for (const auto& q : parties) {
      if (q == p) continue;
      auto pub = ReadFile(absl::StrCat(PartyDir(q), "/signing.pub"));
      EXPECT_TRUE(pub.ok()) << pub.status();
      std::string key = pub.ok() ? *pub : "";
      while (!key.empty() && key.back() == '\n') key.pop_back();
      absl::StrAppend(&c, "peers {\n  party: \"", q, "\"\n  address: \"127.0.0.1:",
                      peer_ports_[q], "\"\n  ca_file: \"../", q, "/ca.pem\"\n",
                      "  signing_keys { key_id: \"", q, "-1\" ed25519_public_key: \"", key,
                      "\" }\n}\n");
    }
    configs_[p] = c;
  }
}

TestNetwork::~TestNetwork() {
  for (auto& [party, server] : servers_) {
    if (server) server->Shutdown(absl::ZeroDuration());
  }
  servers_.clear();
}

std::string TestNetwork::ClientConfigPath(const std::string& party, const std::string& name) {
  std::string path = absl::StrCat(PartyDir(party), "/", name, ".conf");
  std::ofstream out(path);
  out << "address: \"127.0.0.1:" << operator_ports_.at(party) << "\"\n"
      << "ca_file: \"ca.pem\"\ncert_file: \"operators/" << name << ".pem\"\n"
      << "key_file: \"operators/" << name << ".key\"\n";
  return path;
}

std::shared_ptr<grpc::Channel> TestNetwork::OperatorChannel(const std::string& party,
                                                            const std::string& name) {
  grpc::SslCredentialsOptions opts;
  opts.pem_root_certs = ReadFile(PartyDir(party) + "/ca.pem").value_or("");
  opts.pem_cert_chain =
      ReadFile(absl::StrCat(PartyDir(party), "/operators/", name, ".pem")).value_or("");
  opts.pem_private_key =
      ReadFile(absl::StrCat(PartyDir(party), "/operators/", name, ".key")).value_or("");
  return grpc::CreateChannel(absl::StrCat("127.0.0.1:", operator_ports_.at(party)),
                             grpc::SslCredentials(opts));
}

std::shared_ptr<grpc::Channel> TestNetwork::PeerChannel(const std::string& party,
                                                        const std::string& as_party) {
  grpc::SslCredentialsOptions opts;
  opts.pem_root_certs = ReadFile(PartyDir(party) + "/ca.pem").value_or("");
  opts.pem_cert_chain = ReadFile(PartyDir(as_party) + "/node.pem").value_or("");
  opts.pem_private_key = ReadFile(PartyDir(as_party) + "/node.key").value_or("");
  return grpc::CreateChannel(absl::StrCat("127.0.0.1:", peer_ports_.at(party)),
                             grpc::SslCredentials(opts));
}

absl::Status TestNetwork::Start(const std::string& party, const Clock* clock) {
  Stop(party);
  auto setup = ParseNodeConfig(configs_.at(party), party + ".conf", PartyDir(party));
  if (!setup.ok()) return setup.status();
  setups_[party] = *std::move(setup);
  auto server = NodeServer::Start(setups_[party].get(), clock);
  if (!server.ok()) return server.status();
  servers_[party] = *std::move(server);
  return absl::OkStatus();
}

void TestNetwork::Stop(const std::string& party) {
  auto it = servers_.find(party);
  if (it == servers_.end()) return;
  it->second->Shutdown(absl::ZeroDuration());
  it->second->Wait();
  servers_.erase(it);
}

std::string TestNetwork::SqlitePath(const std::string& party) const {
  if (databases_.count(party) > 0) return "";
  return PartyDir(party) + "/data/comity.db";
}

absl::Status TestNetwork::ExecSql(const std::string& party, const std::string& sql) {
  auto pg = databases_.find(party);
  if (pg != databases_.end()) return pg->second->Exec(sql);
  sqlite3* db = nullptr;
  absl::Status st;
  char* err = nullptr;
  if (sqlite3_open_v2(SqlitePath(party).c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) !=
          SQLITE_OK ||
      sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    st = absl::InternalError(absl::StrCat(sql, ": ", err != nullptr ? err : sqlite3_errmsg(db)));
  }
  sqlite3_free(err);
  sqlite3_close(db);
  return st;
}

absl::Status TestNetwork::FlipStoredByte(const std::string& party, const std::string& table,
                                         const std::string& column, const std::string& where,
                                         const std::string& needle) {
  auto pg = databases_.find(party);
  if (pg != databases_.end()) {
    // 0-based byte offset in the value.
    const std::string at =
        needle.empty() ? absl::StrCat("length(", column, ") / 2")
                       : absl::StrCat("position('\\x", HexEncode(needle), "'::bytea in ",
                                      column, ") - 1");
    const std::string sql = absl::StrCat("UPDATE ", table, " SET ", column, " = set_byte(",
                                         column, ", ", at, ", get_byte(", column, ", ", at,
                                         ") # 1) WHERE (", where, ") AND ", at, " >= 0");
    PGconn* conn = PQconnectdb(pg->second->url().c_str());
    absl::Status st;
    PGresult* res = PQexec(conn, sql.c_str());
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
      st = absl::InternalError(absl::StrCat(
          sql, ": ", absl::StripTrailingAsciiWhitespace(PQresultErrorMessage(res))));
    } else if (std::string(PQcmdTuples(res)) == "0") {
      st = absl::NotFoundError(absl::StrCat("no row of ", table, " matched: ", sql));
    }
    PQclear(res);
    PQfinish(conn);
    return st;
  }
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(SqlitePath(party).c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) !=
      SQLITE_OK) {
    sqlite3_close(db);
    return absl::UnavailableError("cannot open " + SqlitePath(party));
  }
  std::vector<std::pair<int64_t, std::string>> changed;
  sqlite3_stmt* stmt = nullptr;
  const std::string select =
      absl::StrCat("SELECT rowid, ", column, " FROM ", table, " WHERE ", where);
  absl::Status st;
  if (sqlite3_prepare_v2(db, select.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    st = absl::InternalError(absl::StrCat(select, ": ", sqlite3_errmsg(db)));
  }
  while (st.ok() && sqlite3_step(stmt) == SQLITE_ROW) {
    const char* p = static_cast<const char*>(sqlite3_column_blob(stmt, 1));
    std::string value(p == nullptr ? "" : std::string(p, sqlite3_column_bytes(stmt, 1)));
    const size_t at = needle.empty() ? value.size() / 2 : value.find(needle);
    if (value.empty() || at == std::string::npos) continue;
    value[at] = static_cast<char>(value[at] ^ 1);
    changed.emplace_back(sqlite3_column_int64(stmt, 0), std::move(value));
  }
  sqlite3_finalize(stmt);
  const std::string update =
      absl::StrCat("UPDATE ", table, " SET ", column, " = ?1 WHERE rowid = ?2");
  for (const auto& [rowid, value] : changed) {
    if (!st.ok()) break;
    if (sqlite3_prepare_v2(db, update.c_str(), -1, &stmt, nullptr) != SQLITE_OK ||
        sqlite3_bind_blob(stmt, 1, value.data(), static_cast<int>(value.size()),
                          SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int64(stmt, 2, rowid) != SQLITE_OK || sqlite3_step(stmt) != SQLITE_DONE) {
      st = absl::InternalError(absl::StrCat(update, ": ", sqlite3_errmsg(db)));
    }
    sqlite3_finalize(stmt);
  }
  sqlite3_close(db);
  if (st.ok() && changed.empty()) {
    return absl::NotFoundError(absl::StrCat("no row of ", table, " matched ", where));
  }
  return st;
}

}  // namespace comity::testing
