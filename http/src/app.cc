#include "percore/http/app.h"

#include "session.h"

namespace percore::http {
namespace {

absl::Status Validate(const HttpOptions& o) {
  // Spans are 32-bit offsets from a message's first byte.
  if (o.max_body_bytes > (size_t{1} << 30)) {
    return absl::InvalidArgumentError("max_body_bytes must be at most 1 GiB");
  }
  if (o.max_header_bytes < 256 || o.max_header_bytes > (size_t{1} << 20)) {
    return absl::InvalidArgumentError("max_header_bytes must be in 256..1048576");
  }
  if (o.max_target_bytes == 0 || o.max_target_bytes > o.max_header_bytes) {
    return absl::InvalidArgumentError("max_target_bytes must be in 1..max_header_bytes");
  }
  if (o.header_timeout <= absl::ZeroDuration() || o.body_timeout <= absl::ZeroDuration() ||
      o.idle_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("HTTP timeouts must be > 0");
  }
  for (const std::string& range : o.trust_proxy) {
    Cidr cidr;
    if (!ParseCidr(range, &cidr)) {
      return absl::InvalidArgumentError("trust_proxy: \"" + range +
                                        "\" is not an address or CIDR range");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ProtocolFactory> App::Factory() const {
  absl::Status valid = Validate(options_);
  if (!valid.ok()) return valid;
  AppConfig config_value{router_, options_, on_error_, {}, hub_};
  for (const std::string& range : options_.trust_proxy) {
    ParseCidr(range, &config_value.trusted.emplace_back());
  }
  auto config = std::make_shared<const AppConfig>(std::move(config_value));
  return ProtocolFactory([config](Worker& worker) -> std::unique_ptr<Protocol> {
    return std::make_unique<HttpProtocol>(config, worker);
  });
}

absl::StatusOr<std::unique_ptr<Engine>> App::Listen(const EngineOptions& options) const {
  absl::StatusOr<ProtocolFactory> factory = Factory();
  if (!factory.ok()) return factory.status();
  // With HTTP/2 on, ALPN offers it first, as nginx's `http2 on` does, unless the protocols
  // were chosen by hand.
  if (options_.http2.enabled && options.tls.alpn == TlsOptions().alpn) {
    EngineOptions with_h2 = options;
    with_h2.tls.alpn.insert(with_h2.tls.alpn.begin(), "h2");
    return Engine::Create(with_h2, std::move(*factory));
  }
  return Engine::Create(options, std::move(*factory));
}

absl::Status App::Run(const EngineOptions& options) const {
  absl::StatusOr<std::unique_ptr<Engine>> engine = Listen(options);
  if (!engine.ok()) return engine.status();
  return (*engine)->Run();
}

}  // namespace percore::http
