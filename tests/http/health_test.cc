#include "percore/http/health.h"

#include <string>

#include "gtest/gtest.h"

namespace percore::http {
namespace {

TEST(HealthTest, MetricsHaveOneLabelledSamplePerLoop) {
  EngineStats stats(2);
  stats.worker(0).cpu = 4;
  stats.worker(1).cpu = 7;
  LoopStats::Add(stats.worker(0).instances[0].responses[1], 40);
  LoopStats::Add(stats.worker(0).instances[1].responses[1], 1);  // a second instance's: summed
  LoopStats::Add(stats.worker(1).instances[1].responses[3], 2);
  LoopStats::Add(stats.worker(1).instances[0].accepted, 9);
  LoopStats::Add(stats.worker(0).restarts, 3);
  stats.worker(1).instances[0].lag_us.store(1500);
  stats.worker(1).instances[1].lag_us.store(700);  // the larger lag is shown
  std::string out;
  AppendMetrics(stats, &out);
  for (const char* line :
       {"# TYPE percore_requests_total counter\n",
        "percore_requests_total{worker=\"0\",cpu=\"4\",code=\"2xx\"} 41\n",
        "percore_requests_total{worker=\"1\",cpu=\"7\",code=\"4xx\"} 2\n",
        "percore_requests_total{worker=\"1\",cpu=\"7\",code=\"2xx\"} 0\n",
        "percore_connections_accepted_total{worker=\"1\",cpu=\"7\"} 9\n",
        "percore_loop_restarts_total{worker=\"0\",cpu=\"4\"} 3\n",
        "percore_loop_lag_seconds{worker=\"1\",cpu=\"7\"} 0.001500\n", "percore_ready 0\n"}) {
    EXPECT_NE(out.find(line), std::string::npos) << line << " in\n" << out;
  }
  // Every sample line is "name{labels} value" or a comment: what Prometheus parses.
  size_t start = 0;
  while (start < out.size()) {
    size_t end = out.find('\n', start);
    std::string line = out.substr(start, end - start);
    EXPECT_TRUE(line.rfind("# ", 0) == 0 || line.find("} ") != std::string::npos ||
                line.rfind("percore_ready ", 0) == 0)
        << line;
    start = end + 1;
  }
}

}  // namespace
}  // namespace percore::http
