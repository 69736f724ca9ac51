// The CLI's settings file (CLI process): location, permission checks, atomic writes.
#include "client/cli_config.h"

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>

namespace jw::client {
namespace {

constexpr size_t kMaxConfigBytes = 1 << 20;

std::string octal(mode_t m) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(m & 07777));
  return buf;
}

std::string dirOf(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// mkdir -p; only the directories we create get 0700 (an existing ~/.config keeps its mode).
Status makeDirs(const std::string& dir) {
  struct stat st {};
  if (stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) return Error{dir + " exists and is not a directory"};
    return okStatus();
  }
  if (errno != ENOENT) return sysError("cannot access " + dir);
  std::string parent = dirOf(dir);
  if (parent != dir) {
    Status s = makeDirs(parent);
    if (!s) return s;
  }
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return sysError("cannot create " + dir);
  return okStatus();
}

Status writeAll(int fd, const std::string& data, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return sysError("cannot write " + path);
    }
    done += static_cast<size_t>(n);
  }
  return okStatus();
}

}  // namespace

Result<std::string> configPath(const GetEnv& getenv_fn) {
  auto get = [&](const char* name) -> const char* {
    return getenv_fn ? getenv_fn(name) : std::getenv(name);
  };
  const char* xdg = get("XDG_CONFIG_HOME");
  // The XDG spec says relative values are invalid and must be ignored.
  if (xdg != nullptr && xdg[0] == '/') return std::string(xdg) + "/jobworker/config.json";
  const char* home = get("HOME");
  if (home == nullptr || home[0] != '/') {
    return Error{"cannot find the config directory: set HOME or XDG_CONFIG_HOME"};
  }
  return std::string(home) + "/.config/jobworker/config.json";
}

std::string serializeConfig(const CliConfig& cfg) {
  Poco::JSON::Object o(Poco::JSON_PRESERVE_KEY_ORDER);
  o.set("server", cfg.server);
  if (!cfg.ca_file.empty()) o.set("ca_file", cfg.ca_file);
  if (!cfg.token.empty()) o.set("token", cfg.token);
  if (!cfg.user.empty()) o.set("user", cfg.user);
  if (!cfg.role.empty()) o.set("role", cfg.role);
  if (!cfg.expires_at.empty()) o.set("expires_at", cfg.expires_at);
  std::ostringstream os;
  o.stringify(os, 2);
  os << '\n';
  return os.str();
}

Result<CliConfig> parseConfig(const std::string& text, const std::string& origin) {
  Poco::JSON::Object::Ptr o;
  try {
    Poco::JSON::Parser parser;
    auto v = parser.parse(text);
    if (v.type() == typeid(Poco::JSON::Object::Ptr)) o = v.extract<Poco::JSON::Object::Ptr>();
  } catch (const Poco::Exception& e) {
    return Error{origin + " is not valid JSON (" + e.message() +
                 "): fix or delete it, then run 'jobworker login'"};
  }
  if (!o) return Error{origin + " is not a JSON object: delete it, then run 'jobworker login'"};
  CliConfig cfg;
  const std::pair<const char*, std::string*> fields[] = {
      {"server", &cfg.server}, {"ca_file", &cfg.ca_file},       {"token", &cfg.token},
      {"user", &cfg.user},     {"expires_at", &cfg.expires_at}, {"role", &cfg.role}};
  for (const auto& [key, dest] : fields) {
    if (!o->has(key) || o->isNull(key)) continue;
    if (!o->get(key).isString()) {
      return Error{origin + ": '" + key + "' must be a string: fix it or run 'jobworker login'"};
    }
    *dest = o->getValue<std::string>(key);
  }
  return cfg;
}

namespace {

// The text of a file only its owner (us) can access; nullopt when it does not exist.
Result<std::optional<std::string>> readPrivateFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ENOENT) return std::optional<std::string>();
    if (errno == ELOOP) {
      return Error{path + " is a symbolic link: replace it with a regular file (mode 0600)"};
    }
    return sysError("cannot read " + path);
  }
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    Error e = sysError("cannot stat " + path);
    close(fd);
    return e;
  }
  // Checked on the open descriptor, so what is checked is what is read.
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return Error{path + " is not a regular file: remove it and run 'jobworker login'"};
  }
  if (st.st_uid != geteuid()) {
    close(fd);
    return Error{path + " belongs to uid " + std::to_string(st.st_uid) +
                 ", not to you: remove it and run 'jobworker login'"};
  }
  if ((st.st_mode & 077) != 0) {
    close(fd);
    return Error{path + " holds a session token and is accessible by group or others (mode " +
                 octal(st.st_mode) + "): run 'chmod 600 " + path +
                 "' (and log in again if others may have read it)"};
  }
  std::string text;
  char buf[8192];
  while (true) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      Error e = sysError("cannot read " + path);
      close(fd);
      return e;
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxConfigBytes) {
      close(fd);
      return Error{path + " is too large to be a jobworker config: delete it"};
    }
  }
  close(fd);
  return std::optional<std::string>(std::move(text));
}

}  // namespace

Result<std::optional<CliConfig>> loadConfig(const std::string& path) {
  auto text = readPrivateFile(path);
  if (!text) return text.error();
  if (!text.value()) return std::optional<CliConfig>();
  auto cfg = parseConfig(*text.value(), path);
  if (!cfg) return cfg.error();
  return std::optional<CliConfig>(std::move(cfg.value()));
}

Status saveConfig(const std::string& path, const CliConfig& cfg) {
  return writePrivateFile(path, serializeConfig(cfg));
}

Status writePrivateFile(const std::string& path, const std::string& text) {
  std::string dir = dirOf(path);
  Status made = makeDirs(dir);
  if (!made) return made;
  std::string tmp = path + ".XXXXXX";
  // mkstemp creates the file 0600 from the start: the token is never briefly world-readable.
  int fd = mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0) return sysError("cannot create a temporary file in " + dir);
  auto cleanup = [&](Error e) {
    close(fd);
    unlink(tmp.c_str());
    return e;
  };
  if (fchmod(fd, 0600) != 0) return cleanup(sysError("cannot chmod " + tmp));
  Status w = writeAll(fd, text, tmp);
  if (!w) return cleanup(w.error());
  if (fsync(fd) != 0) return cleanup(sysError("cannot fsync " + tmp));
  if (close(fd) != 0) {
    Error e = sysError("cannot close " + tmp);
    unlink(tmp.c_str());
    return e;
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    Error e = sysError("cannot replace " + path);
    unlink(tmp.c_str());
    return e;
  }
  // Makes the rename itself durable; a failure here loses nothing already written.
  int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return okStatus();
}

// ---- contexts ----------------------------------------------------------------------------------

bool validContextName(const std::string& name) {
  if (name.empty() || name.size() > 63) return false;
  for (size_t i = 0; i < name.size(); i++) {
    unsigned char c = static_cast<unsigned char>(name[i]);
    bool ok = std::isalnum(c) || (i > 0 && (c == '_' || c == '.' || c == '-'));
    if (!ok) return false;
  }
  return true;
}

std::string contextFile(const std::string& dir, const std::string& name) {
  return dir + "/contexts/" + name + ".json";
}

Result<std::string> currentContext(const std::string& dir) {
  const std::string path = dir + "/current-context";
  auto text = readPrivateFile(path);
  if (!text) return text.error();
  if (!text.value()) return std::string();
  std::string name = *text.value();
  while (!name.empty() && (name.back() == '\n' || name.back() == '\r')) name.pop_back();
  if (!validContextName(name)) {
    return Error{path + " does not name a context: run 'jobworker context use NAME'"};
  }
  return name;
}

Status setCurrentContext(const std::string& dir, const std::string& name) {
  return writePrivateFile(dir + "/current-context", name + "\n");
}

Result<std::vector<std::string>> listContexts(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir((dir + "/contexts").c_str());
  if (d == nullptr) {
    if (errno == ENOENT) return out;
    return sysError("cannot read " + dir + "/contexts");
  }
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n.size() > 5 && n.compare(n.size() - 5, 5, ".json") == 0) {
      n.resize(n.size() - 5);
      if (validContextName(n)) out.push_back(n);
    }
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

Result<bool> migrateLegacyConfig(const std::string& dir) {
  const std::string legacy = dir + "/config.json";
  auto cfg = loadConfig(legacy);  // the same checks: a readable token is refused, not moved
  if (!cfg) return cfg.error();
  if (!cfg.value()) return false;
  auto existing = listContexts(dir);
  if (!existing) return existing.error();
  if (!existing.value().empty()) return false;  // contexts exist: the old file is left alone
  Status saved = saveConfig(contextFile(dir, kDefaultContext), *cfg.value());
  if (!saved) return saved.error();
  Status current = setCurrentContext(dir, kDefaultContext);
  if (!current) return current.error();
  if (unlink(legacy.c_str()) != 0)
    return sysError("cannot remove " + legacy + " after migrating it");
  return true;
}

}  // namespace jw::client
