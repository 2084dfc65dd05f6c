// The audit page's HTTP side: which page a path names, access control (the
// token and its cookie), the security headers every answer carries, and
// `comity audit serve` itself. What each page shows: audit_page_render.cc.
#include "client/audit_page.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/audit_page_internal.h"
#include "client/connection.h"
#include "server/config/node_config.h"
#include "server/core/parties.h"
#include "server/crypto/x509_identity.h"
#include "server/util/files.h"
#include "server/util/hex.h"

namespace comity {
namespace {

using audit_page_internal::Context;
using audit_page_internal::Esc;

constexpr char kCsp[] =
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'";

std::string RandomToken() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) return "";
  return HexEncode(
      absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
}

bool IsLoopbackHost(absl::string_view host) {
  return host == "localhost" || absl::StartsWith(host, "127.") || host == "::1" ||
         host == "[::1]";
}

}  // namespace

std::string AuditRoute::Path() const {
  switch (page) {
    case kCases:
      return "/";
    case kCase:
      return absl::StrCat("/case/", PercentEncode(case_id));
    case kLog:
      return "/log";
    case kStats:
      return "/stats";
  }
  return "/";
}

absl::StatusOr<AuditRoute> AuditRouteOf(absl::string_view path) {
  if (!absl::StartsWith(path, "/") || absl::StartsWith(path, "//")) {
    return absl::InvalidArgumentError(
        "the path must start with exactly one '/' (\"//host\" names another site)");
  }
  for (char c : path) {
    if (c == '\\') {
      return absl::InvalidArgumentError(
          "a backslash in the path (browsers read it as '/')");
    }
    if (absl::ascii_iscntrl(c)) {
      return absl::InvalidArgumentError("a control character in the path");
    }
  }
  AuditRoute route;
  absl::string_view id = path;
  if (path == "/") {
    route.page = AuditRoute::kCases;
  } else if (path == "/log") {
    route.page = AuditRoute::kLog;
  } else if (path == "/stats") {
    route.page = AuditRoute::kStats;
  } else if (absl::ConsumePrefix(&id, "/case/") && IsCanonicalUuid(id)) {
    route.page = AuditRoute::kCase;
    route.case_id = std::string(id);
  } else {
    return absl::NotFoundError("no such page");
  }
  return route;
}

HttpResponse AuditPage::BarePage(int status, absl::string_view heading,
                                 absl::string_view body) {
  HttpResponse r;
  r.status = status;
  r.body = absl::StrCat(
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>",
      Esc(heading), "</title></head><body><h1>", Esc(heading), "</h1>", body,
      "</body></html>\n");
  return r;
}

std::string AuditPage::CookieName() const {
  return absl::StrCat("comity_audit_", options_.port);
}

bool AuditPage::Authorized(const HttpRequest& request) const {
  auto matches = [this](absl::string_view candidate) {
    return !options_.token.empty() && candidate.size() == options_.token.size() &&
           CRYPTO_memcmp(candidate.data(), options_.token.data(), candidate.size()) == 0;
  };
  auto token = request.query.find("token");
  if (token != request.query.end()) return matches(token->second);
  auto cookie = request.headers.find("cookie");
  if (cookie == request.headers.end()) return false;
  const std::string name = CookieName();
  for (absl::string_view part : absl::StrSplit(cookie->second, ';')) {
    part = absl::StripAsciiWhitespace(part);
    if (absl::ConsumePrefix(&part, name) && absl::ConsumePrefix(&part, "=") &&
        matches(part)) {
      return true;
    }
  }
  return false;
}

HttpResponse AuditPage::Handle(const HttpRequest& request) const {
  HttpResponse response;
  absl::StatusOr<AuditRoute> route = AuditRouteOf(request.path);
  if (!route.ok() && absl::IsInvalidArgument(route.status())) {
    // Syntax only: nothing about the node, token or not.
    response = BarePage(400, "400: bad request",
                        absl::StrCat("<p>", Esc(route.status().message()), "</p>"));
  } else if (!Authorized(request)) {
    // Nothing about the node or the operator before the token is shown.
    response = BarePage(403, "403: access token needed",
                        "<p>This page needs the access token that <code>comity audit "
                        "serve</code> printed when it started: open the URL it printed "
                        "(<code>http://HOST:PORT/?token=...</code>).</p>");
  } else if (!route.ok()) {
    response = Page(404, "Not found", "<p>No such page: see the links above.</p>");
  } else if (request.query.count("token") != 0) {
    // Trade the token in the URL for a cookie, and drop it from the URL
    // (history, screen shares). The Location is the page's own path, made
    // from the route, never the request's text.
    std::vector<std::string> rest;
    for (const auto& [k, v] : request.query) {
      if (k != "token")
        rest.push_back(absl::StrCat(PercentEncode(k), "=", PercentEncode(v)));
    }
    std::string location = route->Path();
    if (!rest.empty()) absl::StrAppend(&location, "?", absl::StrJoin(rest, "&"));
    response.status = 303;
    response.headers.push_back({"Location", location});
    response.headers.push_back(
        {"Set-Cookie", absl::StrCat(CookieName(), "=", options_.token,
                                    "; Path=/; HttpOnly; SameSite=Strict")});
    response.body =
        absl::StrCat("<p>See <a href=\"", Esc(location), "\">the page</a>.</p>");
  } else {
    switch (route->page) {
      case AuditRoute::kCases:
        response = Cases(request);
        break;
      case AuditRoute::kCase:
        response = Case(route->case_id);
        break;
      case AuditRoute::kLog:
        response = Log(request);
        break;
      case AuditRoute::kStats:
        response = Stats();
        break;
    }
  }
  response.headers.push_back({"Content-Security-Policy", kCsp});
  response.headers.push_back({"X-Frame-Options", "DENY"});
  response.headers.push_back({"X-Content-Type-Options", "nosniff"});
  response.headers.push_back({"Referrer-Policy", "no-referrer"});
  response.headers.push_back({"Cache-Control", "no-store"});
  return response;
}

int RunAuditServe(const ParsedArgs& args, const GetEnv& env, std::ostream& out,
                  std::ostream& err) {
  const bool json = args.switches.count("json") != 0;
  auto fail = [&err, json](int code, absl::string_view message) {
    return ReportError(err, json, "comity", CliError(code, std::string(message)));
  };
  // The role, from the certificate, before anything is served: the node
  // would refuse every page anyway.
  const std::string path = args.Get("connect", env("COMITY_CONNECT"));
  if (path.empty()) {
    return fail(
        kExitUsage,
        "audit serve needs an auditor's client config: pass --connect FILE or set "
        "COMITY_CONNECT");
  }
  auto config = LoadClientConfig(path);
  if (!config.ok()) return fail(kExitUsage, config.status().message());
  auto pem = ReadFile(config->cert_file());
  if (!pem.ok()) return fail(kExitFailure, pem.status().message());
  auto identity = IdentityFromCertPem(*pem);
  if (!identity.ok()) {
    return fail(kExitFailure,
                absl::StrCat(config->cert_file(), ": ", identity.status().message()));
  }
  if (identity->kind != CertIdentity::Kind::kOperator || !identity->HasRole("auditor")) {
    return fail(
        kExitFailure,
        absl::StrCat("refusing to serve the audit page: ",
                     identity->kind == CertIdentity::Kind::kOperator
                         ? absl::StrCat("operator ", identity->operator_name, " of ",
                                        identity->party)
                         : absl::StrCat("the certificate of party ", identity->party),
                     " lacks the auditor role (no urn:comity:role:auditor URI in ",
                     config->cert_file(), "); use an auditor's --connect file"));
  }
  auto connection = ConnectToNode(args, env);
  if (!connection.ok()) return fail(kExitUsage, connection.status().message());
  auto operator_stub = v1::OperatorService::NewStub(connection->channel);
  auto audit_stub = v1::AuditService::NewStub(connection->channel);
  // The node has the last word on the role: ask it once now.
  v1::GetTreeHeadsRequest one;
  one.set_limit(1);
  v1::GetTreeHeadsResponse probe;
  grpc::Status st = audit_stub->GetTreeHeads(Context(15).get(), one, &probe);
  if (!st.ok()) {
    return fail(NodeUnreachable(st) ? kExitUnreachable : kExitFailure,
                absl::StrCat("refusing to serve the audit page: ",
                             DescribeRpcError(connection->address, st)));
  }
  AuditPageOptions options;
  options.token = RandomToken();
  if (options.token.empty())
    return fail(kExitFailure, "no randomness for the access token");
  options.node_address = connection->address;
  options.who = absl::StrCat(identity->operator_name, " (auditor) of ", identity->party);
  const std::string listen = args.Get("listen", "127.0.0.1:0");
  // The port is known only once bound; the page reads it through `page`.
  std::unique_ptr<AuditPage> page;
  auto server = HttpServer::Create(
      listen, [&page](const HttpRequest& request) { return page->Handle(request); });
  if (!server.ok()) {
    return fail(absl::IsInvalidArgument(server.status()) ? kExitUsage : kExitFailure,
                server.status().message());
  }
  options.port = (*server)->port();
  page = std::make_unique<AuditPage>(operator_stub.get(), audit_stub.get(), options);
  // The host to print in the URL: as given, or loopback for a wildcard.
  std::string host = listen.find(':') == std::string::npos
                         ? std::string()
                         : listen.substr(0, listen.rfind(':'));
  if (host.empty() || host == "0.0.0.0") host = "127.0.0.1";
  if (host == "::" || host == "[::]") host = "[::1]";
  if (!IsLoopbackHost(host) || absl::StartsWith(listen, "0.0.0.0") ||
      absl::StartsWith(listen, "[::]")) {
    err << "comity: warning: " << listen
        << " is not only loopback: the page is plain HTTP, so the token and the pages "
           "cross "
           "the network in clear; prefer 127.0.0.1 and an SSH tunnel\n";
  }
  out << "audit page of the node at " << connection->address << ", as " << options.who
      << ", read-only\n"
      << "open: http://" << host << ":" << options.port << "/?token=" << options.token
      << "\n"
      << "The token is shown only here: anyone who has it can read the page while this "
         "runs. "
         "Stop with Ctrl-C.\n";
  out.flush();
  (*server)->Serve();
  return fail(kExitFailure, "the HTTP server stopped");
}

}  // namespace comity
