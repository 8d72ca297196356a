// A small JSON service on percore's public API: users kept in memory, shared by every loop.
//
//   GET    /api/users              list (?name= filters by exact name)
//   GET    /api/users/:id          one user, or a JSON 404
//   POST   /api/users              {"name": "...", "email": "..."} -> 201 and Location
//   PUT    /api/users/:id          replaces name and email
//   DELETE /api/users/:id          204
//   GET    /api/users/:id/avatar   answered later, as after a call to another service
//
// Writes need "Authorization: Bearer <token>"; every answer is JSON, errors included
// ({"error": "...", "status": 404}); CORS for the configured origin; gzip when worth it; one
// access-log line per request, with its time.
#ifndef PERCORE_EXAMPLES_USERS_USERS_SERVICE_H_
#define PERCORE_EXAMPLES_USERS_USERS_SERVICE_H_

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "percore/http/app.h"

namespace users {

struct User {
  int64_t id = 0;
  std::string name;
  std::string email;
};

// The users, behind a mutex: each loop is a thread, and any of them may serve any request.
class UserStore {
 public:
  std::vector<User> List(std::string_view name_filter) const;
  std::optional<User> Find(int64_t id) const;
  User Add(std::string name, std::string email);
  // False if there is no such user.
  bool Update(const User& user);
  bool Remove(int64_t id);

 private:
  mutable std::mutex mutex_;
  std::map<int64_t, User> users_;
  int64_t next_id_ = 1;
};

struct ServiceOptions {
  std::string token = "secret";  // Bearer token for writes
  std::string cors_origin = "https://app.example";
  // Where the access log goes: one line per request. Null: nowhere.
  std::function<void(const std::string& line)> access_log;
  // How long /avatar waits, as a remote call would.
  int avatar_delay_ms = 5;
};

// The service's App, serving `store` (which must outlive it).
percore::http::App MakeApp(std::shared_ptr<UserStore> store, ServiceOptions options = {});

}  // namespace users

#endif  // PERCORE_EXAMPLES_USERS_USERS_SERVICE_H_
