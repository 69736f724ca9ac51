// The name validators of names.h; runs in every process (supervisor, frontend, admin tool, CLI).
#include "common/names.h"

namespace jw::names {

namespace {

bool lower(char c) { return c >= 'a' && c <= 'z'; }
bool upper(char c) { return c >= 'A' && c <= 'Z'; }
bool digit(char c) { return c >= '0' && c <= '9'; }
bool lowerHex(char c) { return digit(c) || (c >= 'a' && c <= 'f'); }

constexpr size_t kMaxNameBytes = 32;  // useradd's limit, and what the users file allows

}  // namespace

bool validUserName(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameBytes) return false;
  if (!lower(name[0]) && name[0] != '_') return false;
  for (char c : name.substr(1)) {
    if (!lower(c) && !digit(c) && c != '_' && c != '.' && c != '-') return false;
  }
  return true;
}

bool validAccountName(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameBytes) return false;
  if (!lower(name[0]) && !upper(name[0]) && name[0] != '_') return false;
  for (size_t i = 1; i < name.size(); ++i) {
    char c = name[i];
    if (c == '$' && i == name.size() - 1) break;  // Samba machine accounts end in '$'
    if (!lower(c) && !upper(c) && !digit(c) && c != '_' && c != '.' && c != '-') return false;
  }
  return true;
}

bool validEnvName(std::string_view name) {
  if (name.empty()) return false;
  if (!lower(name[0]) && !upper(name[0]) && name[0] != '_') return false;
  for (char c : name.substr(1)) {
    if (!lower(c) && !upper(c) && !digit(c) && c != '_') return false;
  }
  return true;
}

bool validJobId(std::string_view id) {
  if (id.size() != 36) return false;
  for (size_t i = 0; i < id.size(); i++) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? id[i] != '-' : !lowerHex(id[i])) return false;
  }
  // Version 4, RFC 4122 variant: what newJobId() sets.
  return id[14] == '4' && (id[19] == '8' || id[19] == '9' || id[19] == 'a' || id[19] == 'b');
}

namespace {

bool nameChar(char c) {
  return lower(c) || upper(c) || digit(c) || c == '_' || c == '.' || c == '-';
}

}  // namespace

bool validJobName(std::string_view name) {
  if (name.empty() || name.size() > kMaxJobName || validJobId(name)) return false;
  if (!lower(name[0]) && !upper(name[0]) && !digit(name[0])) return false;
  for (char c : name) {
    if (!nameChar(c)) return false;
  }
  return true;
}

bool validLabel(std::string_view kv) {
  size_t eq = kv.find('=');
  if (eq == std::string_view::npos) return false;
  std::string_view key = kv.substr(0, eq), value = kv.substr(eq + 1);
  if (key.empty() || key.size() > kMaxLabelKey || value.size() > kMaxLabelValue) return false;
  if (!lower(key[0]) && !upper(key[0]) && !digit(key[0])) return false;
  for (char c : key) {
    if (!nameChar(c) && c != '/') return false;
  }
  for (char c : value) {
    if (!nameChar(c)) return false;
  }
  return true;
}

std::string labelListProblem(const std::vector<std::string>& labels) {
  if (labels.size() > kMaxLabels) {
    return "more than " + std::to_string(kMaxLabels) + " labels";
  }
  for (size_t i = 0; i < labels.size(); i++) {
    if (!validLabel(labels[i]))
      return "label '" + labels[i].substr(0, kMaxLabelText) + "' is not " +
             std::string(kLabelPattern);
    std::string_view key = std::string_view(labels[i]).substr(0, labels[i].find('='));
    for (size_t j = 0; j < i; j++) {
      if (std::string_view(labels[j]).substr(0, labels[j].find('=')) == key) {
        return "label key '" + std::string(key) + "' given twice";
      }
    }
  }
  return "";
}

}  // namespace jw::names
