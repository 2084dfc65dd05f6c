// The auditors' page (comity audit serve) end to end: two nodes on real
// mutual TLS, a case worked through several signed steps, the `comity`
// binary serving the page with an auditor's credentials, and every page
// loaded in a real headless Chromium (--dump-dom prints the DOM it
// rendered). Also: no token is 403, POST is 405, the headers, escaping of
// another party's text, a non-auditor's credentials refused, and the token
// redirect going only to the page's own paths (never "//host" and its
// encoded or backslashed forms).
//
// Chromium comes from deploy/install-deps.sh. Without it this test fails,
// unless COMITY_ALLOW_NO_BROWSER=1 (outside CI), when it exits 77 (skipped).
#include "client/audit_page.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/http_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/util/files.h"
#include "tests/testing/e2e_helpers.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_network.h"

extern char** environ;

namespace comity {
namespace {

using ::comity::testing::Cli;
using ::comity::testing::CliResult;
using ::comity::testing::IsOk;
using ::comity::testing::ParseJson;
using ::testing::HasSubstr;
using ::testing::Not;

// Text another party controls, with markup that must stay text.
constexpr char kHostileFacts[] =
    "ransomware <b id=\"injected\">bold</b><script>document.title='pwned'</script> & "
    "\"quotes\"";

std::string FindBrowser() {
  if (const char* env = std::getenv("COMITY_CHROMIUM"); env != nullptr && *env != '\0') {
    return env;
  }
  for (const char* name : {"chromium", "chromium-browser", "google-chrome"}) {
    const char* path_env = std::getenv("PATH");
    for (absl::string_view dir : absl::StrSplit(path_env ? path_env : "/usr/bin", ':')) {
      std::string candidate = absl::StrCat(dir, "/", name);
      if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
  }
  return "";
}

struct ProcessResult {
  int code = -1;  // Exit status; -1 if killed or timed out.
  std::string out;
  std::string err;
};

// Starts `argv` with stdout and stderr into files; returns the pid.
pid_t Spawn(const std::vector<std::string>& argv, const std::string& out_path,
            const std::string& err_path) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ) != 0) pid = -1;
  posix_spawn_file_actions_destroy(&actions);
  return pid;
}

std::string Slurp(const std::string& path) {
  auto text = ReadFile(path);
  return text.ok() ? *text : "";
}

// Runs a command to its end, killed after `timeout`.
ProcessResult RunProgram(const std::vector<std::string>& argv, const std::string& scratch,
                         absl::Duration timeout) {
  static int counter = 0;
  const std::string base = absl::StrCat(scratch, "/proc-", ++counter);
  ProcessResult result;
  pid_t pid = Spawn(argv, base + ".out", base + ".err");
  if (pid < 0) {
    result.err = "cannot start " + argv[0];
    return result;
  }
  const absl::Time deadline = absl::Now() + timeout;
  int status = 0;
  for (;;) {
    pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (absl::Now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      result.err = "timed out; ";
      break;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  if (WIFEXITED(status) && result.err.empty()) result.code = WEXITSTATUS(status);
  result.out = Slurp(base + ".out");
  result.err += Slurp(base + ".err");
  return result;
}

// A raw HTTP exchange (one request, Connection: close).
std::string RawHttp(int port, const std::string& request) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return "connect failed";
  }
  timeval tv{30, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  (void)!::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string response;
  char buf[4096];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    response.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return response;
}

class AuditPageTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    browser_ = new std::string(FindBrowser());
    net_ = new testing::TestNetwork({"FR", "JP"});
    ASSERT_THAT(net_->Start("FR"), IsOk());
    ASSERT_THAT(net_->Start("JP"), IsOk());
    scratch_ = new std::string(net_->dir() + "/page-test");
    ASSERT_EQ(::mkdir(scratch_->c_str(), 0700), 0);

    // FR asks JP; JP acknowledges, asks for information, FR answers (a
    // signed proposal JP numbers into the case), JP accepts and responds.
    case_id_ = new std::string(Submit("FR", "JP", "ransomware on a hospital"));
    const std::string fr_alice = net_->ClientConfigPath("FR", "alice");
    const std::string jp_bob = net_->ClientConfigPath("JP", "bob");
    struct Step {
      std::string connect;
      std::vector<std::string> args;
      v1::CaseState state;
    };
    const Step steps[] = {
        {jp_bob, {"ack", *case_id_}, v1::CASE_ACKNOWLEDGED},
        {jp_bob,
         {"ask", *case_id_, "--text", "Which accounts?"},
         v1::CASE_INFO_REQUESTED},
        {fr_alice,
         {"answer", *case_id_, "--text", "accounts 17 and 18"},
         v1::CASE_UNDER_REVIEW},
        {jp_bob, {"accept", *case_id_}, v1::CASE_ACCEPTED},
        {jp_bob,
         {"respond", *case_id_, "--text", "preserved for 90 days", "--final"},
         v1::CASE_EXECUTED},
    };
    for (const Step& s : steps) {
      std::vector<std::string> args = {"--connect", s.connect};
      args.insert(args.end(), s.args.begin(), s.args.end());
      CliResult r = Cli(args);
      ASSERT_EQ(r.code, 0) << s.args[0] << ": " << r.err;
      ASSERT_TRUE(FranceSees(*case_id_, s.state)) << s.args[0];
    }
    // JP asks FR, with markup in the facts: text from another party.
    hostile_id_ = new std::string(Submit("JP", "FR", kHostileFacts));
    // JP asks FR again and FR refuses: the statistics count the ground
    // from the signed step.
    const std::string refused_id = Submit("JP", "FR", "a second incident");
    CliResult refused = Cli({"--connect", net_->ClientConfigPath("FR", "bob"), "refuse",
                             refused_id, "--ground", "ESSENTIAL_INTERESTS", "--reasons",
                             "not our jurisdiction"});
    ASSERT_EQ(refused.code, 0) << refused.err;

    // The page, served by the real binary with carol's (auditor) config.
    const std::string out = *scratch_ + "/serve.out";
    // Under timeout(1): gone by itself should this test die without
    // TearDownTestSuite (timeout passes our SIGTERM on).
    serve_pid_ = Spawn({"/usr/bin/timeout", "580", COMITY_CLI_BINARY, "--connect",
                        net_->ClientConfigPath("FR", "carol"), "audit", "serve",
                        "--listen", "127.0.0.1:0"},
                       out, *scratch_ + "/serve.err");
    ASSERT_GT(serve_pid_, 0);
    base_url_ = new std::string();
    token_ = new std::string();
    for (int i = 0; i < 600 && token_->empty(); ++i) {
      for (absl::string_view line : absl::StrSplit(Slurp(out), '\n')) {
        if (!absl::ConsumePrefix(&line, "open: ")) continue;
        size_t q = line.find("/?token=");
        ASSERT_NE(q, absl::string_view::npos) << line;
        *base_url_ = std::string(line.substr(0, q));
        *token_ = std::string(line.substr(q + 8));
      }
      if (token_->empty()) absl::SleepFor(absl::Milliseconds(50));
    }
    ASSERT_FALSE(token_->empty())
        << "serve printed no URL: " << Slurp(out) << Slurp(*scratch_ + "/serve.err");
    ASSERT_EQ(token_->size(), 64u);
    ASSERT_TRUE(absl::SimpleAtoi(base_url_->substr(base_url_->rfind(':') + 1), &port_));
  }

  static void TearDownTestSuite() {
    if (serve_pid_ > 0) {
      ::kill(serve_pid_, SIGTERM);
      ::waitpid(serve_pid_, nullptr, 0);
    }
    delete net_;
    delete browser_;
    delete scratch_;
    delete case_id_;
    delete hostile_id_;
    delete base_url_;
    delete token_;
  }

  static std::string Submit(const std::string& from, const std::string& to,
                            const std::string& facts) {
    CliResult r = Cli({"--connect",
                       net_->ClientConfigPath(from, "alice"),
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
                       "Central authority",
                       "--facts",
                       facts,
                       "--data-sought",
                       "logs",
                       "--relation",
                       "C2 server",
                       "--custodian",
                       "Hosting KK",
                       "--necessity",
                       "log rotation",
                       "--intent-mla",
                       "--json"});
    EXPECT_EQ(r.code, 0) << r.err;
    if (r.code != 0) return "";
    return ParseJson(r.out).fields().at("id").string_value();
  }

  static bool FranceSees(const std::string& id, v1::CaseState state) {
    for (int i = 0; i < 400; ++i) {
      auto records = net_->server("FR")->node()->Get(id);
      if (records.ok() && (*records)[0].case_state() == state) return true;
      absl::SleepFor(absl::Milliseconds(50));
    }
    return false;
  }

  // The DOM Chromium renders for `path` (a fresh profile each time, so the
  // cookie comes from this URL's token).
  static ProcessResult Browse(const std::string& path, bool with_token = true) {
    static int profile = 0;
    std::string url = *base_url_ + path;
    if (with_token) {
      absl::StrAppend(&url, path.find('?') == std::string::npos ? "?" : "&",
                      "token=", *token_);
    }
    return RunProgram(
        {*browser_, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions",
         absl::StrCat("--user-data-dir=", *scratch_, "/profile-", ++profile),
         "--dump-dom", url},
        *scratch_, absl::Seconds(120));
  }

  static inline std::string* browser_ = nullptr;
  static inline testing::TestNetwork* net_ = nullptr;
  static inline std::string* scratch_ = nullptr;
  static inline std::string* case_id_ = nullptr;
  static inline std::string* hostile_id_ = nullptr;
  static inline std::string* base_url_ = nullptr;
  static inline std::string* token_ = nullptr;
  static inline pid_t serve_pid_ = -1;
  static inline int port_ = 0;
};

TEST_F(AuditPageTest, CasesPageListsTheCasesWithStateAndObligation) {
  ProcessResult page = Browse("/");
  ASSERT_EQ(page.code, 0) << page.err;
  EXPECT_THAT(page.out, HasSubstr("<h1>Cases</h1>"));
  EXPECT_THAT(page.out, HasSubstr(*case_id_));
  EXPECT_THAT(page.out, HasSubstr(absl::StrCat("href=\"/case/", *case_id_, "\"")));
  EXPECT_THAT(page.out, HasSubstr("CASE_EXECUTED"));
  EXPECT_THAT(page.out, HasSubstr(*hostile_id_));
  EXPECT_THAT(page.out, HasSubstr("CASE_DELIVERED"));
  EXPECT_THAT(page.out, HasSubstr("PRESERVATION"));
  EXPECT_THAT(page.out, HasSubstr("BINDING"));  // JP's assessment, from its receipt.
  // Newest first: the request JP sent later comes before FR's.
  EXPECT_LT(page.out.find(*hostile_id_), page.out.find(*case_id_));
}

TEST_F(AuditPageTest, CasePageShowsEverySignedStepVerified) {
  ProcessResult page = Browse("/case/" + *case_id_);
  ASSERT_EQ(page.code, 0) << page.err;
  const std::string& dom = page.out;
  EXPECT_THAT(dom, HasSubstr(*case_id_));
  // Request, receipt, five transitions and FR's proposal: 8 signatures.
  EXPECT_THAT(dom,
              HasSubstr("8 signatures checked here with the keys the node returned: all "
                        "VERIFIED"));
  for (const char* step : {"ACKNOWLEDGE", "REQUEST_INFO", "PROVIDE_INFO", "ACCEPT",
                           "RESPOND", "proposal PROVIDE_INFO", "receipt", "request"}) {
    EXPECT_THAT(dom, HasSubstr(absl::StrCat("<b>", step))) << step;
  }
  EXPECT_THAT(dom, HasSubstr("accounts 17 and 18"));
  EXPECT_THAT(dom, HasSubstr("preserved for 90 days"));
  size_t verified = 0;
  for (size_t at = dom.find(">VERIFIED<"); at != std::string::npos;
       at = dom.find(">VERIFIED<", at + 1)) {
    ++verified;
  }
  EXPECT_EQ(verified, 8u);
  EXPECT_THAT(dom, Not(HasSubstr("FAILED")));
  EXPECT_THAT(dom, Not(HasSubstr("BROKEN")));
  EXPECT_THAT(dom, HasSubstr(">linked<"));
  EXPECT_THAT(dom, HasSubstr("CASE_EXECUTED"));
}

TEST_F(AuditPageTest, AnotherPartysMarkupIsShownAsText) {
  ProcessResult page = Browse("/case/" + *hostile_id_);
  ASSERT_EQ(page.code, 0) << page.err;
  // The text is there, escaped; no element was made of it, no script ran.
  EXPECT_THAT(page.out, HasSubstr("ransomware &lt;b id=\"injected\"&gt;bold&lt;/b&gt;"));
  EXPECT_THAT(page.out, Not(HasSubstr("<b id=\"injected\">")));
  EXPECT_THAT(page.out, Not(HasSubstr("<script>")));
  EXPECT_THAT(page.out, Not(HasSubstr("pwned</title>")));
  EXPECT_THAT(page.out, HasSubstr("VERIFIED"));
}

TEST_F(AuditPageTest, LogPageShowsTheVerifiedLogFilteredAndPaged) {
  ProcessResult page = Browse("/log");
  ASSERT_EQ(page.code, 0) << page.err;
  EXPECT_THAT(page.out, HasSubstr("Log verified"));
  EXPECT_THAT(page.out, HasSubstr("consistent"));
  EXPECT_THAT(page.out, HasSubstr("REQUEST_SUBMITTED"));
  EXPECT_THAT(page.out, HasSubstr("NODE_STARTED"));

  // The same entries as `comity audit log` with the same filters.
  CliResult cli = Cli({"--connect", net_->ClientConfigPath("FR", "carol"), "audit", "log",
                       "--request", *case_id_, "--type", "CASE_UPDATED"});
  ASSERT_EQ(cli.code, 0) << cli.err;
  const size_t shown = cli.out.rfind("\n(");
  ASSERT_NE(shown, std::string::npos) << cli.out;
  int n = 0;
  ASSERT_TRUE(absl::SimpleAtoi(
      cli.out.substr(shown + 2, cli.out.find(' ', shown) - shown - 2), &n))
      << cli.out;
  EXPECT_GE(n, 4);  // At least JP's four own steps reached FR.
  ProcessResult filtered = Browse("/log?type=CASE_UPDATED&request=" + *case_id_);
  ASSERT_EQ(filtered.code, 0) << filtered.err;
  EXPECT_THAT(filtered.out, HasSubstr(absl::StrCat(n, " entries shown")));
  EXPECT_THAT(filtered.out, Not(HasSubstr("REQUEST_SUBMITTED</td>")));

  ProcessResult first = Browse("/log?limit=2");
  ASSERT_EQ(first.code, 0) << first.err;
  EXPECT_THAT(first.out, HasSubstr("2 entries shown"));
  EXPECT_THAT(first.out, HasSubstr("from=2&amp;limit=2\">next page"));
}

TEST_F(AuditPageTest, StatsPageDrawsChartsPerPartnerAndInstrument) {
  ProcessResult page = Browse("/stats");
  ASSERT_EQ(page.code, 0) << page.err;
  EXPECT_THAT(page.out, HasSubstr("<svg"));
  EXPECT_THAT(page.out, HasSubstr("Requests per partner"));
  EXPECT_THAT(page.out, HasSubstr("JP (sent)"));
  EXPECT_THAT(page.out, HasSubstr("JP (received)"));
  EXPECT_THAT(page.out, HasSubstr("ETS185"));
  EXPECT_THAT(page.out, HasSubstr("Median response time per partner"));
  EXPECT_THAT(page.out, HasSubstr("JP (n=2)"));  // The executed case and the refused one.
  EXPECT_THAT(page.out, HasSubstr("2 request(s) decided"));
  // From the signed case steps (issue 15): refusals by ground, steps per
  // partner and instrument, time to decide and respond.
  EXPECT_THAT(page.out, HasSubstr("case refusals, by ground</dt><dd>ESSENTIAL_INTERESTS 1"));
  EXPECT_THAT(page.out, HasSubstr("case steps, partner JP"));
  EXPECT_THAT(page.out, HasSubstr("case steps, instrument ETS185"));
  EXPECT_THAT(page.out, HasSubstr("2 decided"));
  EXPECT_THAT(page.out, HasSubstr("1 responded"));
}

TEST_F(AuditPageTest, TheTokenGuardsEveryPageAndBecomesACookie) {
  ProcessResult none = Browse("/", /*with_token=*/false);
  ASSERT_EQ(none.code, 0) << none.err;
  EXPECT_THAT(none.out, HasSubstr("403: access token needed"));
  EXPECT_THAT(none.out, Not(HasSubstr(*case_id_)));

  const std::string host = absl::StrCat("Host: 127.0.0.1:", port_, "\r\n");
  std::string raw =
      RawHttp(port_, "GET /case/" + *case_id_ + " HTTP/1.1\r\n" + host + "\r\n");
  EXPECT_THAT(raw, HasSubstr("HTTP/1.1 403 "));
  EXPECT_THAT(raw, Not(HasSubstr(*case_id_)));
  raw = RawHttp(port_,
                "GET /?token=" + std::string(64, '0') + " HTTP/1.1\r\n" + host + "\r\n");
  EXPECT_THAT(raw, HasSubstr("HTTP/1.1 403 "));

  // The token in the URL answers with a cookie and a URL without it.
  raw = RawHttp(port_, "GET /log?type=NODE_STARTED&token=" + *token_ + " HTTP/1.1\r\n" +
                           host + "\r\n");
  EXPECT_THAT(raw, HasSubstr("HTTP/1.1 303 "));
  EXPECT_THAT(raw, HasSubstr("\r\nLocation: /log?type=NODE_STARTED\r\n"));
  EXPECT_THAT(raw,
              HasSubstr(absl::StrCat("\r\nSet-Cookie: comity_audit_", port_, "=", *token_,
                                     "; Path=/; HttpOnly; SameSite=Strict\r\n")));
  raw = RawHttp(port_, absl::StrCat("GET /log?type=NODE_STARTED HTTP/1.1\r\n", host,
                                    "Cookie: other=1; comity_audit_", port_, "=", *token_,
                                    "\r\n\r\n"));
  EXPECT_THAT(raw, HasSubstr("HTTP/1.1 200 OK\r\n"));
  EXPECT_THAT(raw, HasSubstr("\r\nContent-Security-Policy: default-src 'none'; style-src "
                             "'unsafe-inline'; img-src data:;"));
  EXPECT_THAT(raw, HasSubstr("\r\nX-Frame-Options: DENY\r\n"));
  EXPECT_THAT(raw, HasSubstr("NODE_STARTED"));
  raw = RawHttp(port_, absl::StrCat("GET / HTTP/1.1\r\n", host, "Cookie: comity_audit_",
                                    port_, "=", std::string(64, 'a'), "\r\n\r\n"));
  EXPECT_THAT(raw, HasSubstr("HTTP/1.1 403 "));
}

// The status code of a raw HTTP response, and its Location header ("" if
// none).
struct RawAnswer {
  int status = 0;
  std::string location;
  bool sets_cookie = false;
};
RawAnswer ParseRawAnswer(const std::string& raw) {
  RawAnswer a;
  const std::string head = raw.substr(0, raw.find("\r\n\r\n"));
  std::vector<std::string> lines = absl::StrSplit(head, "\r\n");
  std::vector<std::string> status_line = absl::StrSplit(lines[0], ' ');
  if (status_line.size() < 2 || !absl::SimpleAtoi(status_line[1], &a.status))
    a.status = -1;
  for (size_t i = 1; i < lines.size(); ++i) {
    absl::string_view line = lines[i];
    if (absl::ConsumePrefix(&line, "Location: ")) a.location = std::string(line);
    if (absl::StartsWith(line, "Set-Cookie:")) a.sets_cookie = true;
  }
  return a;
}

TEST_F(AuditPageTest, TheTokenRedirectsOnlyToThePagesOwnPaths) {
  const std::string host = absl::StrCat("Host: 127.0.0.1:", port_, "\r\n");
  // Paths a browser would read as another host (scheme-relative, backslash,
  // encoded slashes or backslashes), CR/LF meant to add headers, and an
  // absolute URL: never a redirect, let alone elsewhere.
  for (const std::string target :
       {"//evil.example/", "//evil.example", "/\\evil.example/", "/%2F%2Fevil.example/",
        "/%2f%2fevil.example/", "/%5Cevil.example/", "/%5c%5cevil.example/",
        "///evil.example/", "////evil.example/", "/%2F/evil.example/",
        "/\\/evil.example/", "/./%2F%2Fevil.example/",
        "/log%0D%0ALocation:%20http://evil.example/", "/%0D%0ASet-Cookie:%20x=y",
        "/case/%2F%2Fevil.example", "/case/\\evil.example", "http://evil.example/",
        "https://evil.example/x"}) {
    std::string raw =
        RawHttp(port_, absl::StrCat("GET ", target,
                                    target.find('?') == std::string::npos ? "?" : "&",
                                    "token=", *token_, " HTTP/1.1\r\n", host, "\r\n"));
    RawAnswer a = ParseRawAnswer(raw);
    EXPECT_TRUE(a.status == 400 || a.status == 404) << target << ":\n" << raw;
    EXPECT_EQ(a.location, "") << target;
    EXPECT_FALSE(a.sets_cookie) << target;
    EXPECT_THAT(raw, Not(HasSubstr("\r\nLocation:"))) << target;
    EXPECT_THAT(raw, Not(HasSubstr("\r\nSet-Cookie: x"))) << target;
    // Nor with the cookie instead of the token.
    raw = RawHttp(port_,
                  absl::StrCat("GET ", target, " HTTP/1.1\r\n", host,
                               "Cookie: comity_audit_", port_, "=", *token_, "\r\n\r\n"));
    a = ParseRawAnswer(raw);
    EXPECT_TRUE(a.status == 400 || a.status == 404) << target << ":\n" << raw;
    EXPECT_THAT(raw, Not(HasSubstr("\r\nLocation:"))) << target;
  }
  // An unknown page with the token is 404, not a redirect to it.
  RawAnswer unknown = ParseRawAnswer(RawHttp(
      port_, absl::StrCat("GET /nope?token=", *token_, " HTTP/1.1\r\n", host, "\r\n")));
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(unknown.location, "");

  // The page's own paths: the redirect lands on the same page, on this host.
  const struct {
    std::string target;
    std::string location;
  } own[] = {
      {"/?token=" + *token_, "/"},
      {"/?dir=sent&token=" + *token_, "/?dir=sent"},
      {"/stats?token=" + *token_, "/stats"},
      {"/log?token=" + *token_ + "&request=" + *case_id_, "/log?request=" + *case_id_},
      {"/case/" + *case_id_ + "?token=" + *token_, "/case/" + *case_id_},
  };
  for (const auto& c : own) {
    RawAnswer a = ParseRawAnswer(
        RawHttp(port_, absl::StrCat("GET ", c.target, " HTTP/1.1\r\n", host, "\r\n")));
    EXPECT_EQ(a.status, 303) << c.target;
    EXPECT_EQ(a.location, c.location) << c.target;
    EXPECT_TRUE(a.sets_cookie) << c.target;
  }
  // And a browser that follows it shows the page.
  ProcessResult page = Browse("/case/" + *case_id_);
  ASSERT_EQ(page.code, 0) << page.err;
  EXPECT_THAT(page.out, HasSubstr("VERIFIED"));
}

TEST_F(AuditPageTest, OnlyGetAndHeadAreServed) {
  const std::string host = absl::StrCat("Host: 127.0.0.1:", port_, "\r\n");
  for (const char* method : {"POST", "PUT", "DELETE", "OPTIONS"}) {
    std::string raw =
        RawHttp(port_, absl::StrCat(method, " /?token=", *token_, " HTTP/1.1\r\n", host,
                                    "Content-Length: 3\r\n\r\nabc"));
    EXPECT_THAT(raw, HasSubstr("HTTP/1.1 405 Method Not Allowed\r\n")) << method;
    EXPECT_THAT(raw, HasSubstr("\r\nAllow: GET, HEAD\r\n")) << method;
  }
  std::string head = RawHttp(
      port_, absl::StrCat("HEAD /stats HTTP/1.1\r\n", host, "Cookie: comity_audit_",
                          port_, "=", *token_, "\r\n\r\n"));
  EXPECT_THAT(head, HasSubstr("HTTP/1.1 200 OK\r\n"));
  EXPECT_THAT(head, Not(HasSubstr("<svg")));
  EXPECT_THAT(RawHttp(port_, "GARBAGE\r\n\r\n"), HasSubstr("HTTP/1.1 400 "));
  EXPECT_THAT(
      RawHttp(port_, "GET / HTTP/1.1\r\nX: " + std::string(40000, 'x') + "\r\n\r\n"),
      HasSubstr("HTTP/1.1 431 "));
  EXPECT_THAT(
      RawHttp(port_, absl::StrCat("GET /nope HTTP/1.1\r\n", host, "Cookie: comity_audit_",
                                  port_, "=", *token_, "\r\n\r\n")),
      HasSubstr("HTTP/1.1 404 "));
}

TEST_F(AuditPageTest, ANonAuditorCannotServeThePage) {
  for (const char* name : {"alice", "dave"}) {
    ProcessResult r =
        RunProgram({COMITY_CLI_BINARY, "--connect", net_->ClientConfigPath("FR", name),
                    "audit", "serve", "--listen", "127.0.0.1:0"},
                   *scratch_, absl::Seconds(60));
    EXPECT_EQ(r.code, 1) << name << ": " << r.out << r.err;
    EXPECT_THAT(
        r.err, HasSubstr(absl::StrCat("refusing to serve the audit page: operator ", name,
                                      " of FR lacks the auditor role")));
    EXPECT_THAT(r.out, Not(HasSubstr("token=")));
  }
}

TEST_F(AuditPageTest, AnUnreachableNodeIsAClearError) {
  // carol's credentials, but a node address where nothing listens.
  const std::string conf = *scratch_ + "/nowhere.conf";
  std::ofstream(conf) << "address: \"127.0.0.1:" << testing::PickUnusedPort() << "\"\n"
                      << "ca_file: \"" << net_->PartyDir("FR") << "/ca.pem\"\n"
                      << "cert_file: \"" << net_->PartyDir("FR")
                      << "/operators/carol.pem\"\n"
                      << "key_file: \"" << net_->PartyDir("FR")
                      << "/operators/carol.key\"\n";
  ProcessResult r = RunProgram(
      {COMITY_CLI_BINARY, "--connect", conf, "audit", "serve", "--listen", "127.0.0.1:0"},
      *scratch_, absl::Seconds(60));
  EXPECT_EQ(r.code, 3) << r.out << r.err;  // UNREACHABLE (docs/cli.md).
  EXPECT_THAT(r.err,
              HasSubstr("refusing to serve the audit page: cannot reach the node"));
}

// --- The pieces, without a browser. ---

TEST(HtmlTest, EscapesEverythingThatCouldBeMarkup) {
  EXPECT_EQ(HtmlEscape("<a href=\"x\" onclick='y'>&</a>"),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;");
  EXPECT_EQ(HtmlEscape(std::string("a\0b", 3)),
            "a\xEF\xBF\xBD"
            "b");
  std::string svg = SvgBarChart("t<", {{"<FR>", 3}, {"JP", 1}},
                                [](double v) { return absl::StrCat(v); });
  EXPECT_THAT(svg, HasSubstr("&lt;FR&gt;"));
  EXPECT_THAT(svg, Not(HasSubstr("<FR>")));
  EXPECT_THAT(svg, HasSubstr("width=\"340\""));  // The largest bar fills the area.
}

TEST(AuditRedirectTest, LocationIsAlwaysOneOfThePagesOwnPaths) {
  AuditPageOptions options;
  options.token = std::string(64, 'f');
  options.port = 8700;
  // No stubs: neither a redirect nor a refused path calls the node.
  AuditPage page(nullptr, nullptr, options);
  auto answer = [&](const std::string& target) {
    auto request = ParseHttpRequestHead(
        absl::StrCat("GET ", target, " HTTP/1.1\r\nHost: 127.0.0.1:8700"));
    if (request.ok()) return page.Handle(*request);
    HttpResponse refused;
    refused.status = 400;
    return refused;
  };
  auto location = [](const HttpResponse& r) {
    for (const auto& [name, value] : r.headers) {
      if (name == "Location") return value;
    }
    return std::string();
  };
  const std::string token = "token=" + options.token;
  for (const std::string path :
       {"//evil.example/", "/\\evil.example", "/%2F%2Fevil.example", "/%5Cevil.example",
        "///evil.example", "/%2F/evil.example", "/\\/evil", "/%0D%0AX:%20y", "/log/",
        "/log%2F", "/case/", "/case/..%2F..%2Fevil", "/nope", "/stats/x"}) {
    HttpResponse r = answer(absl::StrCat(path, "?", token));
    EXPECT_TRUE(r.status == 400 || r.status == 404) << path << ": " << r.status;
    EXPECT_EQ(location(r), "") << path;
  }
  const std::string id = "0f8fad5b-d9cb-469f-a165-70867728950e";
  EXPECT_EQ(location(answer("/?" + token)), "/");
  EXPECT_EQ(location(answer("/log?" + token)), "/log");
  EXPECT_EQ(location(answer("/log?type=NODE_STARTED&" + token)),
            "/log?type=NODE_STARTED");
  EXPECT_EQ(location(answer("/stats?" + token)), "/stats");
  EXPECT_EQ(location(answer("/case/" + id + "?" + token)), "/case/" + id);
  // Query values are percent-encoded: they cannot end the query or add a header.
  EXPECT_EQ(location(answer("/log?type=%2F%2Fx%0D%0Ay&" + token)),
            "/log?type=%2F%2Fx%0D%0Ay");
}

TEST(HttpTest, RefusesControlCharactersInThePath) {
  for (const char* target : {"/%0D%0ALocation:%20//evil", "/a%0Ab", "/%09", "/%7F"}) {
    auto r = ParseHttpRequestHead(absl::StrCat("GET ", target, " HTTP/1.1"));
    EXPECT_THAT(r, ::comity::testing::StatusIs(absl::StatusCode::kInvalidArgument))
        << target;
  }
}

TEST(HttpTest, ParsesRequestHeads) {
  auto r = ParseHttpRequestHead(
      "GET /case/a%20b?x=1&y=a+b%26c HTTP/1.1\r\nHost: h\r\nCOOKIE:  k=v ");
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->path, "/case/a b");
  EXPECT_EQ(r->query.at("x"), "1");
  EXPECT_EQ(r->query.at("y"), "a b&c");
  EXPECT_EQ(r->headers.at("cookie"), "k=v");
  EXPECT_FALSE(ParseHttpRequestHead("GET http://x/ HTTP/1.1").ok());
  EXPECT_FALSE(ParseHttpRequestHead("GET / HTTP/2").ok());
  EXPECT_FALSE(ParseHttpRequestHead("GET /%zz HTTP/1.1").ok());
  EXPECT_FALSE(ParseHttpRequestHead("GET /%00 HTTP/1.1").ok());
  EXPECT_EQ(PercentEncode("a b/é"), "a%20b%2F%C3%A9");
}

}  // namespace
}  // namespace comity

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (comity::FindBrowser().empty()) {
    const char* allow = std::getenv("COMITY_ALLOW_NO_BROWSER");
    const char* ci = std::getenv("CI");
    const bool in_ci = ci != nullptr && *ci != '\0' && std::string(ci) != "false";
    if (allow != nullptr && std::string(allow) == "1" && !in_ci) {
      std::fprintf(stderr,
                   "audit_page_test: no chromium; skipped (COMITY_ALLOW_NO_BROWSER=1)\n");
      return 77;
    }
    std::fprintf(
        stderr,
        "audit_page_test: no chromium found in PATH (or $COMITY_CHROMIUM): install it "
        "with deploy/install-deps.sh; to skip this test on a machine without a browser "
        "(never in CI), set COMITY_ALLOW_NO_BROWSER=1\n");
    return 1;
  }
  return RUN_ALL_TESTS();
}
