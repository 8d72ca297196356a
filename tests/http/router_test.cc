#include "percore/http/router.h"

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"
#include "response_writer.h"

namespace percore::http {
namespace {

// A handler that answers with `name`, so a test can tell which one Route() found.
Handler Named(std::string name) {
  return [name](const Request&, Response& res) { res.Send(name); };
}

class RouterTest : public ::testing::Test {
 protected:
  // The name of the handler found for `method` and `path`; "404" or "405" when there is none.
  std::string Find(std::string_view method, std::string_view path) {
    params_.clear();
    Router::Result result = router_.Route(method, path, &params_);
    if (result.handler == nullptr) {
      if (!result.path_known) {
        EXPECT_TRUE(params_.empty());
      }
      return result.path_known ? "405" : "404";
    }
    std::string out, fields;
    ResponseCore core(&out, &fields, "Date: x\r\n", false, false, false, false);
    Response res = ResponseWriter::Make(core);
    (*result.handler)(Request(), res);
    return out.substr(out.rfind("\r\n\r\n") + 4);
  }
  std::string Allowed(std::string_view path) {
    std::string out;
    router_.AppendAllowed(path, &out);
    return out;
  }

  Router router_;
  std::vector<RouteParam> params_;
};

TEST_F(RouterTest, ExactMatch) {
  router_.Add("GET", "/", Named("root"));
  router_.Add("GET", "/users", Named("users"));
  router_.Add("GET", "/users/list", Named("list"));
  EXPECT_EQ(Find("GET", "/"), "root");
  EXPECT_EQ(Find("GET", "/users"), "users");
  EXPECT_EQ(Find("GET", "/users/list"), "list");
  EXPECT_EQ(Find("GET", "/user"), "404");
  EXPECT_EQ(Find("GET", "/users/lis"), "404");
  EXPECT_EQ(Find("GET", "/Users"), "404");  // paths are case-sensitive
  EXPECT_EQ(Find("GET", "/users/list/more"), "404");
}

// Exact paths are found through a hash of their length and first and last eight bytes: paths
// that share those, and enough paths to grow the index many times, are each found, and only
// they are.
TEST_F(RouterTest, ManyExactPathsSharingTheirEnds) {
  std::vector<std::string> paths;
  for (int i = 0; i < 300; ++i) {
    paths.push_back("/aaaaaaa" + std::to_string(i) + "zzzzzzzz");  // same ends, same length
    paths.push_back("/p" + std::to_string(i));
  }
  for (const std::string& path : paths) router_.Add("GET", path, Named(path));
  for (const std::string& path : paths) EXPECT_EQ(Find("GET", path), path);
  EXPECT_EQ(Find("GET", "/aaaaaaa300zzzzzzzz"), "404");
  EXPECT_EQ(Find("GET", "/aaaaaaazzzzzzzz"), "404");
  EXPECT_EQ(Find("GET", "/p"), "404");
  EXPECT_EQ(Find("GET", ""), "404");
  Router mounted;
  mounted.Mount("/m", router_);
  EXPECT_TRUE(mounted.Route("GET", "/m/p299", nullptr).handler != nullptr);
  EXPECT_TRUE(mounted.Route("GET", "/m/aaaaaaa17zzzzzzzz", nullptr).handler != nullptr);
  EXPECT_TRUE(mounted.Route("GET", "/p1", nullptr).handler == nullptr);
}

TEST_F(RouterTest, ParamCapture) {
  router_.Add("GET", "/users/:id", Named("user"));
  router_.Add("GET", "/users/:id/posts/:post", Named("post"));
  EXPECT_EQ(Find("GET", "/users/42"), "user");
  ASSERT_EQ(params_.size(), 1u);
  EXPECT_EQ(params_[0].name, "id");
  EXPECT_EQ(params_[0].value, "42");

  EXPECT_EQ(Find("GET", "/users/7/posts/hello%20world"), "post");
  ASSERT_EQ(params_.size(), 2u);
  EXPECT_EQ(params_[0].name, "id");
  EXPECT_EQ(params_[0].value, "7");
  EXPECT_EQ(params_[1].name, "post");
  EXPECT_EQ(params_[1].value, "hello%20world");  // not decoded
}

TEST_F(RouterTest, ParamNeedsANonEmptySegment) {
  router_.Add("GET", "/users/:id", Named("user"));
  EXPECT_EQ(Find("GET", "/users"), "404");
  EXPECT_EQ(Find("GET", "/users/"), "404");
  EXPECT_EQ(Find("GET", "/users//"), "404");
  EXPECT_EQ(Find("GET", "/users/1/2"), "404");
  EXPECT_EQ(Find("GET", "/other/1"), "404");
}

TEST_F(RouterTest, FailedPatternLeavesNoParams) {
  router_.Add("GET", "/a/:x/b", Named("ab"));
  router_.Add("GET", "/a/:y/c", Named("ac"));
  EXPECT_EQ(Find("GET", "/a/1/c"), "ac");
  ASSERT_EQ(params_.size(), 1u);
  EXPECT_EQ(params_[0].name, "y");
  EXPECT_EQ(params_[0].value, "1");
}

TEST_F(RouterTest, ExactBeatsParam) {
  router_.Add("GET", "/users/:id", Named("param"));
  router_.Add("GET", "/users/me", Named("me"));  // added later, still wins
  EXPECT_EQ(Find("GET", "/users/me"), "me");
  EXPECT_TRUE(params_.empty());
  EXPECT_EQ(Find("GET", "/users/you"), "param");
}

// As in Express: the first route of the path that has the method answers, so patterns of one
// shape with other parameter names serve their own methods, and an exact path without the
// method lets a pattern answer.
TEST_F(RouterTest, FirstRouteWithTheMethodAnswers) {
  router_.Add("GET", "/users/:id", Named("get-user"));
  router_.Add("POST", "/users/:name", Named("post-user"));
  router_.Add("DELETE", "/users/me", Named("delete-me"));
  EXPECT_EQ(Find("GET", "/users/7"), "get-user");
  ASSERT_EQ(params_.size(), 1u);
  EXPECT_EQ(params_[0].name, "id");
  EXPECT_EQ(Find("POST", "/users/ann"), "post-user");
  ASSERT_EQ(params_.size(), 1u);
  EXPECT_EQ(params_[0].name, "name");
  EXPECT_EQ(params_[0].value, "ann");
  EXPECT_EQ(Find("GET", "/users/me"), "get-user");  // the exact path has no GET
  EXPECT_EQ(Find("DELETE", "/users/me"), "delete-me");
  EXPECT_EQ(Find("PUT", "/users/7"), "405");
  EXPECT_TRUE(params_.empty());
  EXPECT_EQ(Allowed("/users/7"), "GET, POST, HEAD");
  EXPECT_EQ(Allowed("/users/me"), "DELETE, GET, POST, HEAD");
}

TEST_F(RouterTest, PatternsTriedInOrderAdded) {
  router_.Add("GET", "/:a/x", Named("first"));
  router_.Add("GET", "/y/:b", Named("second"));
  EXPECT_EQ(Find("GET", "/y/x"), "first");
  EXPECT_EQ(Find("GET", "/y/z"), "second");
}

TEST_F(RouterTest, TrailingSlashIgnored) {
  router_.Add("GET", "/users", Named("users"));
  router_.Add("GET", "/items/", Named("items"));
  router_.Add("GET", "/users/:id/", Named("user"));
  EXPECT_EQ(Find("GET", "/users/"), "users");
  EXPECT_EQ(Find("GET", "/items"), "items");
  EXPECT_EQ(Find("GET", "/items/"), "items");
  EXPECT_EQ(Find("GET", "/users/5"), "user");
  EXPECT_EQ(Find("GET", "/users/5/"), "user");
  ASSERT_EQ(params_.size(), 1u);
  EXPECT_EQ(params_[0].value, "5");
  EXPECT_EQ(Find("GET", "/users//"), "404");  // only one slash is ignored
}

TEST_F(RouterTest, RootIsNotTrimmed) {
  router_.Add("GET", "/", Named("root"));
  EXPECT_EQ(Find("GET", "/"), "root");
}

TEST_F(RouterTest, PerMethod) {
  router_.Add("GET", "/items", Named("get"));
  router_.Add("POST", "/items", Named("post"));
  router_.Add("DELETE", "/items/:id", Named("delete"));
  EXPECT_EQ(Find("GET", "/items"), "get");
  EXPECT_EQ(Find("POST", "/items"), "post");
  EXPECT_EQ(Find("PUT", "/items"), "405");
  EXPECT_EQ(Find("DELETE", "/items/3"), "delete");
  EXPECT_EQ(Find("GET", "/items/3"), "405");
  EXPECT_EQ(Find("get", "/items"), "405");  // methods are case-sensitive
}

TEST_F(RouterTest, AnyMethod) {
  router_.Add("*", "/any", Named("any"));
  router_.Add("*", "/mixed", Named("mixed-any"));
  router_.Add("POST", "/mixed", Named("mixed-post"));
  EXPECT_EQ(Find("GET", "/any"), "any");
  EXPECT_EQ(Find("PATCH", "/any"), "any");
  EXPECT_EQ(Find("OPTIONS", "/any"), "any");
  EXPECT_EQ(Find("POST", "/mixed"), "mixed-post");  // a method's own route wins over "*"
  EXPECT_EQ(Find("PUT", "/mixed"), "mixed-any");
}

TEST_F(RouterTest, HeadFallsBackToGet) {
  router_.Add("GET", "/page", Named("get"));
  router_.Add("GET", "/both", Named("get"));
  router_.Add("HEAD", "/both", Named("head"));
  router_.Add("POST", "/post-only", Named("post"));
  EXPECT_EQ(Find("HEAD", "/page"), "get");
  EXPECT_EQ(Find("HEAD", "/both"), "head");
  EXPECT_EQ(Find("HEAD", "/post-only"), "405");
}

TEST_F(RouterTest, HeadPrefersGetOverAny) {
  router_.Add("*", "/page", Named("any"));
  router_.Add("GET", "/page", Named("get"));
  EXPECT_EQ(Find("HEAD", "/page"), "get");
}

TEST_F(RouterTest, NotFoundVersusMethodNotAllowed) {
  router_.Add("GET", "/a", Named("a"));
  router_.Add("GET", "/b/:id", Named("b"));
  std::vector<RouteParam> params;
  Router::Result missing = router_.Route("GET", "/c", &params);
  EXPECT_EQ(missing.handler, nullptr);
  EXPECT_FALSE(missing.path_known);
  Router::Result wrong_method = router_.Route("POST", "/a", &params);
  EXPECT_EQ(wrong_method.handler, nullptr);
  EXPECT_TRUE(wrong_method.path_known);
  Router::Result wrong_method_param = router_.Route("POST", "/b/1", &params);
  EXPECT_EQ(wrong_method_param.handler, nullptr);
  EXPECT_TRUE(wrong_method_param.path_known);
  Router::Result found = router_.Route("GET", "/a", &params);
  EXPECT_NE(found.handler, nullptr);
  EXPECT_TRUE(found.path_known);
}

TEST_F(RouterTest, EmptyRouterFindsNothing) {
  EXPECT_EQ(Find("GET", "/"), "404");
  EXPECT_EQ(Allowed("/"), "");
}

TEST_F(RouterTest, OddPathsFindNothing) {
  router_.Add("GET", "/:id", Named("param"));
  router_.Add("GET", "/a/:id", Named("a-param"));
  EXPECT_EQ(Find("GET", ""), "404");
  EXPECT_EQ(Find("GET", "*"), "404");
  EXPECT_EQ(Find("GET", "http://host/a/1"), "404");
  EXPECT_EQ(Find("CONNECT", "host:443"), "404");
  EXPECT_EQ(Find("GET", "a1"), "404");
}

TEST_F(RouterTest, AppendAllowedText) {
  router_.Add("GET", "/get", Named("x"));
  router_.Add("GET", "/both", Named("x"));
  router_.Add("HEAD", "/both", Named("x"));
  router_.Add("POST", "/post", Named("x"));
  router_.Add("POST", "/multi/:id", Named("x"));
  router_.Add("PUT", "/multi/:id", Named("x"));
  router_.Add("GET", "/multi/:id", Named("x"));
  EXPECT_EQ(Allowed("/get"), "GET, HEAD");
  EXPECT_EQ(Allowed("/get/"), "GET, HEAD");
  EXPECT_EQ(Allowed("/both"), "GET, HEAD");
  EXPECT_EQ(Allowed("/post"), "POST");
  EXPECT_EQ(Allowed("/multi/9"), "POST, PUT, GET, HEAD");
  EXPECT_EQ(Allowed("/missing"), "");
}

TEST_F(RouterTest, AppendAllowedAppends) {
  router_.Add("GET", "/get", Named("x"));
  router_.Add("POST", "/get", Named("x"));
  std::string out = "Allow: ";
  router_.AppendAllowed("/get", &out);
  EXPECT_EQ(out, "Allow: GET, POST, HEAD");
}

TEST_F(RouterTest, DuplicateRouteThrows) {
  router_.Add("GET", "/a", Named("x"));
  router_.Add("*", "/a", Named("x"));
  router_.Add("GET", "/u/:id", Named("x"));
  EXPECT_THROW(router_.Add("GET", "/a", Named("y")), std::invalid_argument);
  EXPECT_THROW(router_.Add("GET", "/a/", Named("y")), std::invalid_argument);  // same path
  EXPECT_THROW(router_.Add("*", "/a", Named("y")), std::invalid_argument);
  EXPECT_THROW(router_.Add("GET", "/u/:id", Named("y")), std::invalid_argument);
  EXPECT_THROW(router_.Add("GET", "/u/:id/", Named("y")), std::invalid_argument);
  // Other methods on the same paths are not duplicates; the first routes still answer.
  EXPECT_NO_THROW(router_.Add("POST", "/a", Named("post")));
  EXPECT_NO_THROW(router_.Add("POST", "/u/:id", Named("post-u")));
  EXPECT_EQ(Find("GET", "/a"), "x");
  EXPECT_EQ(Find("POST", "/a"), "post");
  EXPECT_EQ(Find("POST", "/u/1"), "post-u");
}

TEST_F(RouterTest, MalformedRoutesThrow) {
  EXPECT_THROW(router_.Add("GET", "", Named("x")), std::invalid_argument);
  EXPECT_THROW(router_.Add("GET", "users", Named("x")), std::invalid_argument);
  EXPECT_THROW(router_.Add("GET", "/:", Named("x")), std::invalid_argument);
  EXPECT_THROW(router_.Add("GET", "/users/:", Named("x")), std::invalid_argument);
  EXPECT_THROW(router_.Add("GET", "/users/:/posts", Named("x")), std::invalid_argument);
  EXPECT_THROW(router_.Add("GET", "/users/:a:b", Named("x")), std::invalid_argument);
  EXPECT_THROW(router_.Add("GET", "/users/::a", Named("x")), std::invalid_argument);
  EXPECT_THROW(router_.Add("", "/", Named("x")), std::invalid_argument);
  EXPECT_THROW(router_.Add("G ET", "/", Named("x")), std::invalid_argument);
  EXPECT_THROW(router_.Add("GET/", "/", Named("x")), std::invalid_argument);
  EXPECT_THROW(router_.Add("GET", "/", Handler()), std::invalid_argument);
  // Nothing was added by the failed calls.
  EXPECT_EQ(Find("GET", "/"), "404");
  EXPECT_EQ(Find("GET", "/users/1"), "404");
}

}  // namespace
}  // namespace percore::http
