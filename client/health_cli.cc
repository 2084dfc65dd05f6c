#include "client/health_cli.h"

#include <grpcpp/generic/generic_stub.h>

#include <future>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/args.h"
#include "client/connection.h"
#include "client/output.h"
#include "client/usage.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/wire_format_lite.h"
#include "server/util/log.h"

namespace comity {
namespace {

using google::protobuf::internal::WireFormatLite;

constexpr char kCheckMethod[] = "/grpc.health.v1.Health/Check";

// Debian's gRPC ships no generated code for grpc/health/v1/health.proto
// (its server side is built on upb), so the two one-field messages are
// encoded here:
//   HealthCheckRequest  { string service = 1; }
//   HealthCheckResponse { ServingStatus status = 1; }
std::string EncodeRequest(const std::string& service) {
  std::string bytes;
  if (service.empty()) return bytes;  // proto3: the default is not written.
  google::protobuf::io::StringOutputStream stream(&bytes);
  google::protobuf::io::CodedOutputStream out(&stream);
  WireFormatLite::WriteString(1, service, &out);
  return bytes;
}

absl::StatusOr<HealthStatus> DecodeResponse(const std::string& bytes) {
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()),
                                            static_cast<int>(bytes.size()));
  uint32_t status = 0;  // Absent: UNKNOWN.
  while (uint32_t tag = in.ReadTag()) {
    if (tag == WireFormatLite::MakeTag(1, WireFormatLite::WIRETYPE_VARINT)) {
      if (!in.ReadVarint32(&status)) break;
    } else if (!WireFormatLite::SkipField(&in, tag)) {
      return absl::DataLossError("health response does not parse");
    }
  }
  if (!in.ConsumedEntireMessage()) {
    return absl::DataLossError("health response does not parse");
  }
  if (status > 3) return HealthStatus::kUnknown;
  return static_cast<HealthStatus>(status);
}

}  // namespace

const char* HealthStatusName(HealthStatus status) {
  switch (status) {
    case HealthStatus::kServing:
      return "SERVING";
    case HealthStatus::kNotServing:
      return "NOT_SERVING";
    case HealthStatus::kServiceUnknown:
      return "SERVICE_UNKNOWN";
    case HealthStatus::kUnknown:
      break;
  }
  return "UNKNOWN";
}

absl::StatusOr<HealthStatus> CheckHealth(const std::shared_ptr<grpc::Channel>& channel,
                                         const std::string& service, absl::Duration timeout) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  const std::string request_bytes = EncodeRequest(service);
  grpc::Slice slice(request_bytes);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&ctx, kCheckMethod, grpc::StubOptions(), &request, &response,
                 [&done](grpc::Status s) { done.set_value(std::move(s)); });
  grpc::Status status = done.get_future().get();
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                        status.error_message());
  }
  std::vector<grpc::Slice> slices;
  if (!response.Dump(&slices).ok()) return absl::DataLossError("cannot read health response");
  std::string bytes;
  for (const grpc::Slice& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return DecodeResponse(bytes);
}

int RunHealthCli(const std::vector<std::string>& args, const GetEnv& env, std::ostream& out,
                 std::ostream& err) {
  const std::string& usage = UsageText("health");
  FlagSpec spec;
  spec.with_value = {"connect", "service", "timeout-ms"};
  spec.switches = {"json", "help"};
  const bool json = WantsJson(args);
  auto fail = [&err, json](const CliError& e) {
    return ReportError(err, json, "comity health", e);
  };
  absl::StatusOr<ParsedArgs> parsed = ParseArgs(args, spec);
  if (!parsed.ok()) {
    if (json) return fail({kExitUsage, std::string(parsed.status().message())});
    err << "comity health: " << parsed.status().message() << "\n" << usage;
    return kExitUsage;
  }
  if (parsed->switches.count("help") != 0) {
    out << usage;
    return kExitOk;
  }
  if (!parsed->positional.empty()) {
    return fail({kExitUsage, absl::StrCat("unexpected argument '", parsed->positional[0], "'")});
  }
  int timeout_ms = 5000;
  if (parsed->Has("timeout-ms") &&
      (!absl::SimpleAtoi(parsed->Get("timeout-ms"), &timeout_ms) || timeout_ms <= 0)) {
    return fail({kExitUsage, "--timeout-ms must be a positive number of milliseconds"});
  }
  absl::StatusOr<NodeConnection> conn = ConnectToNode(*parsed, env);
  if (!conn.ok()) return fail({kExitUsage, std::string(conn.status().message())});
  const std::string service = parsed->Get("service", "");
  absl::StatusOr<HealthStatus> status =
      CheckHealth(conn->channel, service, absl::Milliseconds(timeout_ms));
  if (!status.ok()) {
    const grpc::Status rpc(static_cast<grpc::StatusCode>(status.status().code()),
                           std::string(status.status().message()));
    CliError e = absl::IsNotFound(status.status())
                     ? CliError(kExitFailure,
                                absl::StrCat("the node has no service '", service, "'"),
                                "services: comity.v1.OperatorService, comity.v1.AuditService")
                     : RpcCliError(conn->address, rpc);
    if (json) {
      // The probe's answer on stdout, the error as always on stderr.
      out << JsonValue::Object()
                 .Set("address", conn->address)
                 .Set("service", service)
                 .Set("status", e.code == kExitUnreachable ? "UNREACHABLE" : "ERROR")
                 .Set("error", e.message)
                 .Dump()
          << "\n";
    }
    return fail(e);
  }
  if (json) {
    out << JsonValue::Object()
               .Set("address", conn->address)
               .Set("service", service)
               .Set("status", HealthStatusName(*status))
               .Dump()
        << "\n";
  } else {
    out << conn->address << (service.empty() ? "" : " " + service) << ": "
        << HealthStatusName(*status) << "\n";
  }
  return *status == HealthStatus::kServing ? kExitOk : kExitFailure;
}

}  // namespace comity
