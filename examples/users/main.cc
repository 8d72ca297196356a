// users_server: the example service on every CPU.
//
//   ./users_server --port 3000 --token secret
//   curl -s localhost:3000/api/users
//   curl -s -X POST -H 'Authorization: Bearer secret' -H 'Content-Type: application/json' \
//        -d '{"name":"ann","email":"ann@example.com"}' localhost:3000/api/users
#include <cstdio>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "percore/engine.h"
#include "users_service.h"

ABSL_FLAG(int, port, 3000, "TCP port to listen on");
ABSL_FLAG(std::string, token, "secret", "bearer token that writes need");
ABSL_FLAG(bool, access_log, true, "one line per request on stdout");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  users::ServiceOptions service;
  service.token = absl::GetFlag(FLAGS_token);
  if (absl::GetFlag(FLAGS_access_log)) {
    // Called on the loops' threads: one write per line keeps lines whole.
    service.access_log = [](const std::string& line) {
      std::string out = line + "\n";
      fwrite(out.data(), 1, out.size(), stdout);
      fflush(stdout);
    };
  }
  percore::http::App app = users::MakeApp(std::make_shared<users::UserStore>(), service);
  percore::EngineOptions options;
  options.port = absl::GetFlag(FLAGS_port);
  options.on_started = [](const percore::Engine& engine) {
    std::printf("users_server listening on port %d with %zu loops\n", engine.port(),
                engine.workers().size());
    std::fflush(stdout);
  };
  absl::Status status = app.Run(options);  // until SIGINT or SIGTERM
  if (!status.ok()) {
    std::fprintf(stderr, "users_server: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
