// Static(): files under a root directory.
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

#include "codec.h"
#include "percore/http/middleware.h"
#include "response_writer.h"

namespace percore::http {
namespace {

// Whether open() failed for want of descriptors or memory: the server's trouble, not the
// client's.
bool IsServerTrouble(int err) { return err == EMFILE || err == ENFILE || err == ENOMEM; }

// Answers the server's trouble through the error hook and the rate-limited log of 5xx answers,
// as a handler's failure is: 503 with Retry-After for a full descriptor table (one that frees
// up as connections close), 500 for memory.
[[noreturn]] void ThrowServerTrouble(Response& res, int err) {
  const std::string message = std::string("Static: open: ") + std::strerror(err);
  if (err == ENOMEM) throw HttpError(500, message);
  res.Set("Retry-After", "1");
  throw HttpError(503, message);
}

class StaticRoot {
 public:
  StaticRoot(const std::string& root, StaticOptions options) : options_(std::move(options)) {
    dir_ = open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dir_ < 0) {
      throw std::invalid_argument("Static: cannot open directory \"" + root +
                                  "\": " + std::strerror(errno));
    }
    char resolved[PATH_MAX];
    if (realpath(root.c_str(), resolved) == nullptr) {
      close(dir_);
      throw std::invalid_argument("Static: cannot resolve \"" + root + "\"");
    }
    real_root_ = resolved;
  }
  ~StaticRoot() { close(dir_); }
  StaticRoot(const StaticRoot&) = delete;
  StaticRoot& operator=(const StaticRoot&) = delete;

  void Serve(const Request& req, Response& res, const Next& next) const;

 private:
  // Opens `relative` (no leading '/', no ".." segment) beneath `at`; -1 with errno, EXDEV when
  // the path leads out of the root.
  int OpenBeneath(int at, const std::string& relative) const;
  void SendFile(const Request& req, Response& res, int fd, const struct stat& st,
                std::string_view name) const;

  int dir_ = -1;
  std::string real_root_;
  StaticOptions options_;
};

int StaticRoot::OpenBeneath(int at, const std::string& relative) const {
  // The kernel resolves the path and refuses any step out of `at`, through ".." or a symbolic
  // link (absolute or relative) alike, with EXDEV; "/proc/self/fd"-style links are refused too.
  open_how how{};
  how.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  const int fd = static_cast<int>(syscall(SYS_openat2, at, relative.c_str(), &how, sizeof(how)));
  if (fd >= 0 || errno != ENOSYS) return fd;
  // Before Linux 5.6: open, then ask the kernel where the descriptor really is.
  const int plain = openat(at, relative.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (plain < 0) return -1;
  char link[64], where[PATH_MAX];
  std::snprintf(link, sizeof(link), "/proc/self/fd/%d", plain);
  const ssize_t n = readlink(link, where, sizeof(where) - 1);
  const std::string_view real(where, n > 0 ? static_cast<size_t>(n) : 0);
  if (n <= 0 ||
      !(real == real_root_ || (real.starts_with(real_root_) && real.size() > real_root_.size() &&
                               real[real_root_.size()] == '/'))) {
    close(plain);
    errno = EXDEV;
    return -1;
  }
  return plain;
}

void StaticRoot::Serve(const Request& req, Response& res, const Next& next) const {
  if (req.method() != "GET" && req.method() != "HEAD") {
    next();  // a route may take other methods on these paths
    return;
  }
  const std::string_view below = req.path().substr(req.base_path().size());
  std::string decoded;
  if (!PercentDecode(below, /*plus_is_space=*/false, &decoded)) {
    throw HttpError(400, "invalid percent-encoding in the path");
  }
  // Checked after decoding: "%2e%2e", "%2f" and "%00" are what they decode to.
  if (decoded.find('\0') != std::string::npos) throw HttpError(404, "Not Found");
  std::string relative;  // "a/b.txt"; "." for the root itself
  std::string_view name;
  for (std::string_view rest = decoded; !rest.empty();) {
    const size_t slash = rest.find('/');
    const std::string_view segment = rest.substr(0, slash);
    rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
    if (segment.empty() || segment == ".") continue;
    if (segment == "..") throw HttpError(403, "Forbidden");
    if (segment.front() == '.' && !options_.dotfiles) {
      next();  // hidden: as if it were not there
      return;
    }
    if (!relative.empty()) relative.push_back('/');
    relative.append(segment);
  }
  if (relative.empty()) relative = ".";
  int fd = OpenBeneath(dir_, relative);
  if (fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR || errno == ENAMETOOLONG) {
      next();
      return;
    }
    if (IsServerTrouble(errno)) ThrowServerTrouble(res, errno);
    throw HttpError(403, "Forbidden");  // EXDEV (out of the root), ELOOP, EACCES
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    close(fd);
    throw HttpError(500, std::string("Static: fstat: ") + std::strerror(errno));
  }
  if (S_ISDIR(st.st_mode)) {
    if (req.path().empty() || req.path().back() != '/') {
      close(fd);
      // One leading slash: "//sub/" would be a protocol-relative URL, to the host "sub".
      std::string_view path = req.path();
      while (path.size() > 1 && path[1] == '/') path.remove_prefix(1);
      std::string location(path);
      location.push_back('/');
      if (!req.query().empty()) {
        location.push_back('?');
        location.append(req.query());
      }
      res.Redirect(location, 301);
      return;
    }
    const int index =
        options_.index.empty() ? -1 : OpenBeneath(fd, options_.index);  // beneath the directory
    const int open_error = errno;
    close(fd);
    if (index < 0 && !options_.index.empty() && IsServerTrouble(open_error)) {
      ThrowServerTrouble(res, open_error);  // not "no index": the index may well be there
    }
    if (index < 0 || fstat(index, &st) != 0 || !S_ISREG(st.st_mode)) {
      if (index >= 0) close(index);
      next();
      return;
    }
    fd = index;
    name = options_.index;
  } else if (!S_ISREG(st.st_mode) || decoded.ends_with('/') || decoded.ends_with("/.")) {
    // A device, a FIFO, a socket: never served. "a.txt/" names a directory, as for open().
    close(fd);
    next();
    return;
  } else {
    name = relative;
  }
  SendFile(req, res, fd, st, name);
}

void StaticRoot::SendFile(const Request& req, Response& res, int fd, const struct stat& st,
                          std::string_view name) const {
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  std::string etag, modified;
  AppendEtag(st.st_mtim.tv_sec, size, &etag);
  AppendHttpDate(st.st_mtim.tv_sec, &modified);
  res.Set("ETag", etag).Set("Last-Modified", modified).Set("Accept-Ranges", "bytes");
  if (options_.max_age >= 0) {
    res.Set("Cache-Control", "public, max-age=" + std::to_string(options_.max_age));
  }
  res.Type(MimeTypeFor(name));
  // RFC 9110 13.2.2: the preconditions (412, 304) before Range and If-Range.
  if (ResponseWriter::AnswerPreconditions(res, size)) {
    close(fd);
    return;
  }
  uint64_t first = 0, length = size;
  // If-Range (RFC 9110 13.1.5): the range only if the client's copy is this one.
  const std::string_view if_range = req.Header("if-range");
  const bool range_applies = if_range.empty() || if_range == etag || if_range == modified;
  switch (range_applies ? ParseRange(req.Header("range"), size, &first, &length)
                        : RangeResult::kNone) {
    case RangeResult::kOk: {
      std::string range = "bytes " + std::to_string(first) + "-" +
                          std::to_string(first + length - 1) + "/" + std::to_string(size);
      res.Status(206).Set("Content-Range", range);
      break;
    }
    case RangeResult::kUnsatisfiable:
      close(fd);
      res.Status(416)
          .Set("Content-Range", "bytes */" + std::to_string(size))
          .Type("text/plain; charset=utf-8")
          .Send("Range Not Satisfiable\n");
      return;
    case RangeResult::kNone:
    case RangeResult::kIgnore:
      first = 0;
      length = size;
      break;
  }
  res.SendFile(fd, first, length);
}

}  // namespace

Middleware Static(const std::string& root, StaticOptions options) {
  auto state = std::make_shared<const StaticRoot>(root, std::move(options));
  return [state](const Request& req, Response& res, const Next& next) {
    state->Serve(req, res, next);
  };
}

}  // namespace percore::http
