// percore/http/health.h — health, readiness and metrics endpoints an app mounts.
//
//   percore::http::App app;
//   percore::http::MountHealthRoutes(app);   // GET /healthz, /readyz, /metrics
//
// GET /healthz answers 200 "ok" while the process serves. GET /readyz answers 200 "ready" while
// Engine::ready() (every loop up, none crash-looping, no drain begun), else 503 "not ready".
// GET /metrics answers the engine's counters in the Prometheus text format, one series per loop
// labelled worker="<id>",cpu="<n>". Reading them never slows the loops: each counter has one
// writer and is read with a relaxed load.
#ifndef PERCORE_HTTP_HEALTH_H_
#define PERCORE_HTTP_HEALTH_H_

#include <string>
#include <string_view>

#include "percore/http/app.h"
#include "percore/stats.h"

namespace percore::http {

// Adds GET <prefix>/healthz, <prefix>/readyz and <prefix>/metrics to `app`.
void MountHealthRoutes(App& app, std::string_view prefix = "");

// Appends the Prometheus text exposition of `stats` to `out`. Thread-safe.
void AppendMetrics(const EngineStats& stats, std::string* out);

}  // namespace percore::http

#endif  // PERCORE_HTTP_HEALTH_H_
