#include "percore/http/health.h"

#include <vector>

#include "response_writer.h"

namespace percore::http {
namespace {

// A metric family's HELP and TYPE lines.
void AppendHeader(std::string_view name, std::string_view type, std::string_view help,
                  std::string* out) {
  out->append("# HELP ").append(name).append(" ").append(help).append("\n");
  out->append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

// A sample's name and its worker and cpu labels, up to the label set's end (`more`: another
// label follows).
void AppendSample(std::string_view name, size_t id, const WorkerCounters& loop, bool more,
                  std::string* out) {
  out->append(name).append("{worker=\"");
  AppendDecimal(*out, id);
  out->append("\",cpu=\"");
  AppendDecimal(*out, static_cast<size_t>(loop.cpu));
  out->append(more ? "\"," : "\"} ");
}

// One metric family: its HELP and TYPE lines, then one sample per loop.
template <typename Value>
void AppendFamily(const std::vector<WorkerCounters>& workers, std::string_view name,
                  std::string_view type, std::string_view help, Value value, std::string* out) {
  AppendHeader(name, type, help, out);
  for (size_t id = 0; id < workers.size(); ++id) {
    AppendSample(name, id, workers[id], false, out);
    out->append(value(workers[id]));
    out->push_back('\n');
  }
}

// A counter family with one more label: a sample per loop and per value of `label`.
template <typename Value>
void AppendLabeled(const std::vector<WorkerCounters>& workers, std::string_view name,
                   std::string_view help, std::string_view label,
                   const std::vector<std::string>& values, Value value, std::string* out) {
  AppendHeader(name, "counter", help, out);
  for (size_t id = 0; id < workers.size(); ++id) {
    for (size_t i = 0; i < values.size(); ++i) {
      AppendSample(name, id, workers[id], true, out);
      out->append(label).append("=\"").append(values[i]).append("\"} ");
      AppendDecimal(*out, value(workers[id], i));
      out->push_back('\n');
    }
  }
}

std::string Count(uint64_t counter) { return std::to_string(counter); }

}  // namespace

void AppendMetrics(const EngineStats& stats, std::string* out) {
  std::vector<WorkerCounters> workers;
  for (size_t id = 0; id < stats.size(); ++id) workers.push_back(stats.Read(id));
  AppendLabeled(
      workers, "percore_requests_total", "Responses sent, by status class.", "code",
      {"1xx", "2xx", "3xx", "4xx", "5xx"},
      [](const WorkerCounters& l, size_t i) { return l.responses[i]; }, out);
  AppendFamily(
      workers, "percore_connections_accepted_total", "counter", "Connections accepted.",
      [](const WorkerCounters& l) { return Count(l.accepted); }, out);
  AppendFamily(
      workers, "percore_connections_active", "gauge", "Connections open now.",
      [](const WorkerCounters& l) { return Count(l.active); }, out);
  AppendFamily(
      workers, "percore_received_bytes_total", "counter", "Bytes received.",
      [](const WorkerCounters& l) { return Count(l.bytes_in); }, out);
  AppendFamily(
      workers, "percore_sent_bytes_total", "counter", "Bytes sent.",
      [](const WorkerCounters& l) { return Count(l.bytes_out); }, out);
  AppendFamily(
      workers, "percore_loop_restarts_total", "counter",
      "Times the loop died or was stuck and was replaced.",
      [](const WorkerCounters& l) { return Count(l.restarts); }, out);
  AppendFamily(
      workers, "percore_loop_stalls_total", "counter",
      "Times the loop was seen stuck in one request past the stall timeout.",
      [](const WorkerCounters& l) { return Count(l.stalls); }, out);
  AppendFamily(
      workers, "percore_not_ready_answers_total", "counter",
      "Readiness checks answered 503 (a draining host counts them to know it is out).",
      [](const WorkerCounters& l) { return Count(l.not_ready_answers); }, out);
  AppendFamily(
      workers, "percore_callback_failures_total", "counter",
      "Timer, posted-job and watch callbacks that threw (logged; the loop went on).",
      [](const WorkerCounters& l) { return Count(l.callback_failures); }, out);
  AppendFamily(
      workers, "percore_loop_lag_seconds", "gauge", "How late the loop's last periodic tick ran.",
      [](const WorkerCounters& l) { return std::to_string(static_cast<double>(l.lag_us) / 1e6); },
      out);
  AppendFamily(
      workers, "percore_websockets_open", "gauge", "WebSocket connections open now.",
      [](const WorkerCounters& l) { return Count(l.ws_open); }, out);
  const std::vector<std::string> directions = {"in", "out"};
  AppendLabeled(
      workers, "percore_websocket_messages_total",
      "WebSocket messages received and sent (a published one once per subscriber reached).",
      "direction", directions,
      [](const WorkerCounters& l, size_t i) {
        return i == 0 ? l.ws_messages_in : l.ws_messages_out;
      },
      out);
  AppendLabeled(
      workers, "percore_websocket_payload_bytes_total",
      "Payload bytes of the WebSocket messages received and sent, before compression.", "direction",
      directions,
      [](const WorkerCounters& l, size_t i) { return i == 0 ? l.ws_bytes_in : l.ws_bytes_out; },
      out);
  AppendFamily(
      workers, "percore_websocket_dropped_total", "counter",
      "WebSocket messages not sent: the client had more than max_backpressure_bytes waiting.",
      [](const WorkerCounters& l) { return Count(l.ws_dropped); }, out);
  std::vector<std::string> codes;
  for (uint16_t code : kWsCloseCodes) codes.push_back(std::to_string(code));
  codes.push_back("other");
  AppendLabeled(
      workers, "percore_websocket_closes_total",
      "WebSocket connections closed, by close code (1006: without a close frame).", "code", codes,
      [](const WorkerCounters& l, size_t i) { return l.ws_closes[i]; }, out);
  AppendLabeled(
      workers, "percore_tls_handshakes_total",
      "TLS handshakes by result: full, resumed from a ticket, failed (refused, garbage, timeout).",
      "result", {"full", "resumed", "failed"},
      [](const WorkerCounters& l, size_t i) {
        return i == 0 ? l.tls_handshakes - l.tls_resumed : i == 1 ? l.tls_resumed : l.tls_failures;
      },
      out);
  AppendLabeled(
      workers, "percore_http2_streams_total",
      "HTTP/2 streams: begun, and reset (by either side, or closed with an error code).", "event",
      {"begun", "reset"},
      [](const WorkerCounters& l, size_t i) { return i == 0 ? l.h2_streams : l.h2_resets; }, out);
  AppendFamily(
      workers, "percore_http2_goaways_total", "counter",
      "HTTP/2 connections ended with GOAWAY: a drain, the idle timeout, a flood, a protocol error.",
      [](const WorkerCounters& l) { return Count(l.h2_goaways); }, out);
  out->append("# HELP percore_ready Whether every loop serves and no drain has begun.\n");
  out->append("# TYPE percore_ready gauge\n");
  out->append(stats.ready() ? "percore_ready 1\n" : "percore_ready 0\n");
}

void MountHealthRoutes(App& app, std::string_view prefix) {
  const std::string base(prefix);
  app.Get(base + "/healthz", [](const Request&, Response& res) { res.Send("ok\n"); });
  app.Get(base + "/readyz", [](const Request& req, Response& res) {
    if (req.worker().engine_stats().ready()) {
      res.Send("ready\n");
    } else {
      LoopStats::Add(req.worker().stats().not_ready_answers, 1);
      res.Status(503).Send("not ready\n");
    }
  });
  app.Get(base + "/metrics", [](const Request& req, Response& res) {
    std::string body;
    AppendMetrics(req.worker().engine_stats(), &body);
    res.Type("text/plain; version=0.0.4; charset=utf-8").Send(body);
  });
}

}  // namespace percore::http
