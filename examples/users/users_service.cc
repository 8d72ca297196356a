#include "users_service.h"

#include <chrono>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "percore/http/middleware.h"

namespace users {
namespace {

using nlohmann::json;
using percore::http::HttpError;
using percore::http::Next;
using percore::http::Request;
using percore::http::Response;

json ToJson(const User& u) { return {{"id", u.id}, {"name", u.name}, {"email", u.email}}; }

int64_t IdOf(const Request& req) {
  // The route's (\d+) let only digits through; a number too large is still no user.
  try {
    return std::stoll(std::string(req.Param("id")));
  } catch (const std::out_of_range&) {
    throw HttpError(404, "no such user");
  }
}

// The name and email of a JSON body, checked.
User FromBody(const Request& req) {
  const json body = req.Json();  // 415 or 400 for what is not JSON
  if (!body.is_object() || !body.contains("name") || !body["name"].is_string() ||
      !body.contains("email") || !body["email"].is_string()) {
    throw HttpError(422, "name and email must be strings");
  }
  User user{0, body["name"].get<std::string>(), body["email"].get<std::string>()};
  if (user.name.empty() || user.name.size() > 100)
    throw HttpError(422, "name must be 1..100 bytes");
  if (user.email.find('@') == std::string::npos) throw HttpError(422, "email needs an '@'");
  return user;
}

}  // namespace

std::vector<User> UserStore::List(std::string_view name_filter) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<User> out;
  for (const auto& [id, user] : users_) {
    if (name_filter.empty() || user.name == name_filter) out.push_back(user);
  }
  return out;
}

std::optional<User> UserStore::Find(int64_t id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = users_.find(id);
  if (it == users_.end()) return std::nullopt;
  return it->second;
}

User UserStore::Add(std::string name, std::string email) {
  std::lock_guard<std::mutex> lock(mutex_);
  User user{next_id_++, std::move(name), std::move(email)};
  users_[user.id] = user;
  return user;
}

bool UserStore::Update(const User& user) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = users_.find(user.id);
  if (it == users_.end()) return false;
  it->second = user;
  return true;
}

bool UserStore::Remove(int64_t id) {
  std::lock_guard<std::mutex> lock(mutex_);
  return users_.erase(id) != 0;
}

percore::http::App MakeApp(std::shared_ptr<UserStore> store, ServiceOptions options) {
  percore::http::App app;
  auto opts = std::make_shared<const ServiceOptions>(std::move(options));

  // Access log: the line is written when the answer is complete, deferred ones included.
  app.Use([opts](const Request& req, Response& res, const Next& next) {
    if (opts->access_log) {
      const auto start = std::chrono::steady_clock::now();
      std::string what = std::string(req.method()) + " " + std::string(req.target());
      res.OnFinish([opts, start, what = std::move(what)](int status) {
        const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                            std::chrono::steady_clock::now() - start)
                            .count();
        opts->access_log(what + " " + std::to_string(status) + " " + std::to_string(us) + "us");
      });
    }
    next();
  });
  app.Use(percore::http::Compress());
  percore::http::CorsOptions cors;
  cors.origins = {opts->cors_origin};
  cors.allowed_headers = "Authorization, Content-Type";
  cors.max_age = 600;
  app.Use("/api", percore::http::Cors(cors));
  // Reading is open; writing needs the token.
  app.Use("/api", [opts](const Request& req, Response& res, const Next& next) {
    const std::string_view method = req.method();
    if (method != "GET" && method != "HEAD" && method != "OPTIONS" &&
        req.Header("authorization") != "Bearer " + opts->token) {
      res.Set("WWW-Authenticate", "Bearer");
      throw HttpError(401, "a valid bearer token is needed to change users");
    }
    next();
  });
  // Every error as JSON.
  app.OnError([](const Request& req, Response& res, const percore::http::Error& error) {
    res.Status(error.status).Json({{"error", error.message}, {"status", error.status}});
  });

  percore::http::Router api;
  api.Add("GET", "/users", [store](const Request& req, Response& res) {
    json list = json::array();
    for (const User& u : store->List(req.Query("name"))) list.push_back(ToJson(u));
    res.Json(list);
  });
  api.Add("GET", "/users/:id(\\d+)", [store](const Request& req, Response& res) {
    std::optional<User> user = store->Find(IdOf(req));
    if (!user.has_value()) throw HttpError(404, "no such user");
    res.Json(ToJson(*user));
  });
  api.Add("POST", "/users", [store](const Request& req, Response& res) {
    User input = FromBody(req);
    User user = store->Add(std::move(input.name), std::move(input.email));
    res.Status(201).Set("Location", "/api/users/" + std::to_string(user.id)).Json(ToJson(user));
  });
  api.Add("PUT", "/users/:id(\\d+)", [store](const Request& req, Response& res) {
    User user = FromBody(req);
    user.id = IdOf(req);
    if (!store->Update(user)) throw HttpError(404, "no such user");
    res.Json(ToJson(user));
  });
  api.Add("DELETE", "/users/:id(\\d+)", [store](const Request& req, Response& res) {
    if (!store->Remove(IdOf(req))) throw HttpError(404, "no such user");
    res.Status(204).Send("");
  });
  // Answered later, as after a call to another service: the loop serves others meanwhile.
  api.Add("GET", "/users/:id(\\d+)/avatar", [store, opts](const Request& req, Response& res) {
    std::optional<User> user = store->Find(IdOf(req));
    if (!user.has_value()) throw HttpError(404, "no such user");
    req.worker().After(absl::Milliseconds(opts->avatar_delay_ms),
                       [later = res.Defer(), name = user->name]() mutable {
                         later.Json({{"avatar", "https://avatars.example/" + name + ".png"}});
                       });
  });
  app.Mount("/api", api);
  return app;
}

}  // namespace users
