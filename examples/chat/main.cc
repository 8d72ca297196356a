// chat: one chat room on every CPU, over WebSocket, with its page served by Static.
//
//   ./build/examples/chat/chat --port 3000
//   open http://localhost:3000/?name=ann, and http://localhost:3000/?name=bob in another tab
//
//   GET /            public/index.html (Static): the page, which connects to /chat
//   GET /chat?name=  the room, as a WebSocket. Each text message sent is published to every
//                    member on every loop as "name: text"; "* name joined (n here)" and
//                    "* name left (n here)" announce comings and goings. An upgrade without a
//                    fitting name is refused with 400.
//
// The page is looked for in public/ beside the binary (CMake copies it there), or in the
// directory given by --public_dir.
#include <atomic>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/time/time.h"
#include "percore/engine.h"
#include "percore/http/app.h"
#include "percore/http/middleware.h"
#include "percore/http/websocket.h"

ABSL_FLAG(int, port, 3000, "TCP port to listen on (0: any free port)");
ABSL_FLAG(std::string, address, "0.0.0.0", "address to listen on");
ABSL_FLAG(int, threads, 0, "loops (0: one per CPU)");
ABSL_FLAG(std::string, public_dir, "",
          "directory of the page (default: public/ beside the binary)");
ABSL_FLAG(bool, log, true, "a line on stdout per join and leave");

namespace {

using percore::http::App;
using percore::http::HttpError;
using percore::http::Request;
using percore::http::WebSocket;
using percore::http::WsOpcode;

// Everyone is in the one room: a topic every member subscribes to on its own loop.
constexpr std::string_view kRoom = "room";
constexpr size_t kMaxNameBytes = 32;

// A connection's data, made from its upgrade request.
struct Member {
  std::string name;
  int loop = 0;  // which loop serves it, for the log
};

// A name fit to show: 1 to 32 letters, digits, spaces, '-' or '_' (so "name: text" reads one
// way only, and the name is valid in a text message, which must be UTF-8).
bool FitName(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameBytes) return false;
  for (const char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != ' ' && c != '-' && c != '_') {
      return false;
    }
  }
  return true;
}

// `s` without the spaces, tabs and line breaks around it.
std::string_view Trim(std::string_view s) {
  constexpr std::string_view kSpace = " \t\r\n";
  const size_t first = s.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(kSpace) - first + 1);
}

// public/ beside the running binary.
std::filesystem::path BesideBinary() {
  std::error_code error;
  const std::filesystem::path binary = std::filesystem::read_symlink("/proc/self/exe", error);
  return error ? std::filesystem::path("public") : binary.parent_path() / "public";
}

void Log(const std::string& line) {
  if (!absl::GetFlag(FLAGS_log)) return;
  const std::string out = line + "\n";  // one write per line: the loops log at once
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
}

// The room's endpoint. `app` and `here` must outlive the engine serving it.
percore::http::WsBehavior<Member> Room(const App& app, std::atomic<int>& here) {
  percore::http::WsOptions options;
  options.max_message_bytes = 4 << 10;         // a chat line, not a file
  options.max_backpressure_bytes = 256 << 10;  // a reader that far behind loses lines
  options.idle_timeout = absl::Seconds(60);    // pinged after 30 s of silence
  options.compression = percore::http::WsCompression::kShared;  // long lines, when offered
  return {
      .upgrade =
          [](const Request& req, Member& member) {
            const std::string_view name = Trim(req.Query("name"));
            if (!FitName(name)) {
              throw HttpError(400, "?name= must be 1 to 32 letters, digits, spaces, - or _");
            }
            member.name = std::string(name);
            member.loop = req.worker_id();
          },
      .open =
          [&app, &here](WebSocket& ws) {
            ws.Subscribe(kRoom);
            const int count = ++here;
            const Member& member = *ws.data<Member>();
            // To its newcomer too: once it sees its own arrival, it hears the room.
            app.Publish(kRoom, "* " + member.name + " joined (" + std::to_string(count) + " here)");
            Log(member.name + " joined on loop " + std::to_string(member.loop));
          },
      .message =
          [&app](WebSocket& ws, std::string_view message, WsOpcode opcode) {
            if (opcode != WsOpcode::kText) {
              ws.Close(1003, "text only");
              return;
            }
            message = Trim(message);
            if (message.empty()) return;
            app.Publish(kRoom, ws.data<Member>()->name + ": " + std::string(message));
          },
      .close =
          [&app, &here](WebSocket& ws, uint16_t code, std::string_view) {
            const int count = --here;
            const std::string& name = ws.data<Member>()->name;
            app.Publish(kRoom, "* " + name + " left (" + std::to_string(count) + " here)");
            Log(name + " left (" + std::to_string(code) + ")");
          },
      .options = options,
  };
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  std::string page_dir = absl::GetFlag(FLAGS_public_dir);
  if (page_dir.empty()) page_dir = BesideBinary().string();

  App app;
  std::atomic<int> here{0};
  try {
    app.Use(percore::http::Static(page_dir));  // GET / -> index.html; other paths go on
  } catch (const std::exception& e) {
    std::fprintf(stderr, "chat: no page directory %s (--public_dir): %s\n", page_dir.c_str(),
                 e.what());
    return 1;
  }
  app.Ws<Member>("/chat", Room(app, here));
  // A refusal says why (a browser does not show it, curl does); a 5xx gets the default answer.
  app.OnError([](const Request&, percore::http::Response& res, const percore::http::Error& error) {
    if (error.status < 500) res.Send(std::string(error.message) + "\n");
  });

  percore::EngineOptions options;
  options.port = absl::GetFlag(FLAGS_port);
  options.address = absl::GetFlag(FLAGS_address);
  options.threads = absl::GetFlag(FLAGS_threads);
  options.on_started = [page_dir](const percore::Engine& engine) {
    std::printf("chat listening on port %d with %zu loops, page from %s\n", engine.port(),
                engine.workers().size(), page_dir.c_str());
    std::fflush(stdout);
  };
  const absl::Status status = app.Run(options);  // until SIGINT or SIGTERM
  if (!status.ok()) {
    std::fprintf(stderr, "chat: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
