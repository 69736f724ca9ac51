// Dev mode's first-start files: a private ECDSA P-256 CA, a localhost server certificate signed by
// it, and a users file with a random-password `admin`. Runs in
// jobworker-admin (`dev-bootstrap`), which `jobworkerd --dev` runs at startup.
#include "tools/dev_bootstrap.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <memory>
#include <utility>
#include <vector>

#include "common/log.h"
#include "supervisor/accounts/users_file.h"

namespace jw::admin {

namespace {

using namespace jw::supervisor;  // the users-file code the daemon reads too

constexpr long kCaDays = 3650;         // 10 years: a dev CA should outlive the checkout using it
constexpr long kServerDays = 730;      // 2 years, under the 825 days some TLS clients accept
constexpr size_t kPasswordBytes = 18;  // 24 base64url characters, 144 bits

template <typename T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using BnPtr = std::unique_ptr<BIGNUM, Deleter<BIGNUM, BN_free>>;
using ExtPtr = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION, X509_EXTENSION_free>>;
using StorePtr = std::unique_ptr<X509_STORE, Deleter<X509_STORE, X509_STORE_free>>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX, X509_STORE_CTX_free>>;

// "what: <openssl reason>", draining OpenSSL's error queue so the next call starts clean.
Error sslError(const std::string& what) {
  std::string reasons;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!reasons.empty()) reasons += "; ";
    reasons += buf;
  }
  return Error{what + ": " + (reasons.empty() ? "OpenSSL error" : reasons)};
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

// mkdir -p; only the last component gets 0700 (job output lives below it).
Status makeStateDir(const std::string& dir) {
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos != dir.size() && dir[pos] != '/') continue;
    const std::string part = dir.substr(0, pos);
    const bool last = pos == dir.size();
    if (::mkdir(part.c_str(), last ? 0700 : 0755) != 0 && errno != EEXIST) {
      return sysError("create state directory " + part);
    }
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return sysError("stat " + dir);
  if (!S_ISDIR(st.st_mode)) return Error{dir + ": not a directory"};
  if (st.st_uid != ::geteuid()) {
    return Error{dir + ": owned by uid " + std::to_string(st.st_uid) +
                 ", not by the user running jobworkerd"};
  }
  return okStatus();
}

Result<std::string> bioText(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  if (n < 0 || data == nullptr) return Error{"empty PEM output"};
  return std::string(data, static_cast<size_t>(n));
}

Status writeKey(const std::string& path, EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio ||
      PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return sslError("encode key for " + path);
  }
  auto text = bioText(bio.get());
  if (!text) return text.error();
  return writeFileAtomic(path, text.value(), 0600);
}

Status writeCert(const std::string& path, X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) return sslError("encode " + path);
  auto text = bioText(bio.get());
  if (!text) return text.error();
  return writeFileAtomic(path, text.value(), 0644);
}

Result<PkeyPtr> readKey(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return sysError("stat " + path);
  if ((st.st_mode & 077) != 0) {
    return Error{path + ": private key readable by group or others; run: chmod 600 " + path};
  }
  BioPtr bio(BIO_new_file(path.c_str(), "r"));
  if (!bio) return sslError("open " + path);
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) return sslError("read private key " + path);
  return key;
}

Result<X509Ptr> readCert(const std::string& path) {
  BioPtr bio(BIO_new_file(path.c_str(), "r"));
  if (!bio) return sslError("open " + path);
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) return sslError("read certificate " + path);
  return cert;
}

struct KeyPair {
  PkeyPtr key;
  X509Ptr cert;
};

// A key and the certificate stored beside it, refused unless the certificate is for that key.
Result<KeyPair> readPair(const std::string& key_path, const std::string& cert_path) {
  auto key = readKey(key_path);
  if (!key) return key.error();
  auto cert = readCert(cert_path);
  if (!cert) return cert.error();
  if (X509_check_private_key(cert->get(), key->get()) != 1) {
    return sslError(cert_path + " does not match " + key_path);
  }
  return KeyPair{std::move(key).value(), std::move(cert).value()};
}

Result<PkeyPtr> newP256Key() {
  PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!key) return sslError("generate P-256 key");
  return key;
}

Status addExt(X509* cert, X509V3_CTX* ctx, int nid, const char* value) {
  ExtPtr ext(X509V3_EXT_conf_nid(nullptr, ctx, nid, value));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) {
    return sslError(std::string("certificate extension ") + OBJ_nid2sn(nid) + "=" + value);
  }
  return okStatus();
}

struct CertSpec {
  const char* common_name;
  long days;
  // (nid, value) pairs added after the key identifiers are known.
  std::vector<std::pair<int, const char*>> extensions;
};

// A v3 certificate for `key`, signed by issuer_key; issuer == nullptr makes it self-signed.
Result<X509Ptr> makeCert(const CertSpec& spec, EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key) {
  X509Ptr cert(X509_new());
  if (!cert || X509_set_version(cert.get(), X509_VERSION_3) != 1) return sslError("X509_new");

  // A random positive 128-bit serial: re-created dev certificates never collide in a browser's
  // or curl's cache of (issuer, serial).
  unsigned char serial_bytes[16];
  randombytes_buf(serial_bytes, sizeof serial_bytes);
  serial_bytes[0] &= 0x7f;
  serial_bytes[0] |= 0x40;  // keep the full 16 bytes significant
  BnPtr bn(BN_bin2bn(serial_bytes, sizeof serial_bytes, nullptr));
  if (!bn || BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert.get())) == nullptr) {
    return sslError("certificate serial");
  }
  // Back-dated an hour so a client with a slightly slow clock accepts a fresh certificate.
  if (X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) == nullptr ||
      X509_time_adj_ex(X509_getm_notAfter(cert.get()), static_cast<int>(spec.days), 0, nullptr) ==
          nullptr) {
    return sslError("certificate validity");
  }
  X509_NAME* name = X509_get_subject_name(cert.get());
  if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                 reinterpret_cast<const unsigned char*>(spec.common_name), -1, -1,
                                 0) != 1 ||
      X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                 reinterpret_cast<const unsigned char*>("jobworker dev mode"), -1,
                                 -1, 0) != 1) {
    return sslError("certificate subject");
  }
  X509* signer = issuer != nullptr ? issuer : cert.get();
  if (X509_set_issuer_name(cert.get(), X509_get_subject_name(signer)) != 1 ||
      X509_set_pubkey(cert.get(), key) != 1) {
    return sslError("certificate issuer/public key");
  }

  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, signer, cert.get(), nullptr, nullptr, 0);
  for (const auto& [nid, value] : spec.extensions) {
    if (auto s = addExt(cert.get(), &ctx, nid, value); !s) return s.error();
  }
  // The subject key id first: a self-signed certificate's authority key id refers to it.
  if (auto s = addExt(cert.get(), &ctx, NID_subject_key_identifier, "hash"); !s) return s.error();
  if (auto s = addExt(cert.get(), &ctx, NID_authority_key_identifier, "keyid:always"); !s) {
    return s.error();
  }
  if (X509_sign(cert.get(), issuer_key != nullptr ? issuer_key : key, EVP_sha256()) == 0) {
    return sslError("sign certificate " + std::string(spec.common_name));
  }
  return cert;
}

// The check a TLS client makes: chains to the CA, valid now, fit for a TLS server, "localhost".
Status verifyServerCert(X509* ca, X509* server, const std::string& server_path) {
  StorePtr store(X509_STORE_new());
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!store || !ctx || X509_STORE_add_cert(store.get(), ca) != 1 ||
      X509_STORE_CTX_init(ctx.get(), store.get(), server, nullptr) != 1) {
    return sslError("set up certificate verification");
  }
  X509_STORE_CTX_set_purpose(ctx.get(), X509_PURPOSE_SSL_SERVER);
  X509_VERIFY_PARAM_set1_host(X509_STORE_CTX_get0_param(ctx.get()), "localhost", 0);
  if (X509_verify_cert(ctx.get()) != 1) {
    int err = X509_STORE_CTX_get_error(ctx.get());
    ERR_clear_error();
    return Error{
        server_path + ": does not verify against the dev CA: " + X509_verify_cert_error_string(err),
        err};
  }
  return okStatus();
}

struct Ca {
  PkeyPtr key;
  X509Ptr cert;
  bool fresh = false;
};

Result<Ca> ensureCa(const std::string& key_path, const std::string& cert_path) {
  const bool have_key = exists(key_path), have_cert = exists(cert_path);
  Ca ca;
  if (have_key && have_cert) {
    auto pair = readPair(key_path, cert_path);
    if (!pair) return pair.error();
    ca.key = std::move(pair->key);
    ca.cert = std::move(pair->cert);
    return ca;
  }
  if (have_key || have_cert) {
    return Error{"found " + (have_key ? key_path : cert_path) + " without " +
                 (have_key ? cert_path : key_path) +
                 ": remove both (and server.pem/server.key) to create a new dev CA"};
  }
  auto key = newP256Key();
  if (!key) return key.error();
  CertSpec spec{"jobworker dev CA",
                kCaDays,
                {{NID_basic_constraints, "critical,CA:TRUE"},
                 {NID_key_usage, "critical,keyCertSign,cRLSign"}}};
  auto cert = makeCert(spec, key->get(), nullptr, nullptr);
  if (!cert) return cert.error();
  // Key first: a certificate on disk without its key would block the next start.
  if (auto s = writeKey(key_path, key->get()); !s) return s.error();
  if (auto s = writeCert(cert_path, cert->get()); !s) return s.error();
  log::notice("dev mode: created CA " + cert_path);
  ca.key = std::move(key).value();
  ca.cert = std::move(cert).value();
  ca.fresh = true;
  return ca;
}

Status ensureServerCert(Ca& ca, const std::string& key_path, const std::string& cert_path) {
  if (!ca.fresh && exists(key_path) && exists(cert_path)) {
    auto pair = readPair(key_path, cert_path);
    if (!pair) return pair.error();
    auto ok = verifyServerCert(ca.cert.get(), pair->cert.get(), cert_path);
    if (ok) return ok;
    // An expired dev certificate is renewed; any other mismatch is someone's edit, not ours.
    if (ok.error().sys_errno != X509_V_ERR_CERT_HAS_EXPIRED) return ok;
    log::notice("dev mode: " + cert_path + " has expired; issuing a new one");
  }
  auto key = newP256Key();
  if (!key) return key.error();
  CertSpec spec{"localhost",
                kServerDays,
                {{NID_basic_constraints, "critical,CA:FALSE"},
                 {NID_key_usage, "critical,digitalSignature"},
                 {NID_ext_key_usage, "serverAuth"},
                 {NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1"}}};
  auto cert = makeCert(spec, key->get(), ca.cert.get(), ca.key.get());
  if (!cert) return cert.error();
  if (auto s = verifyServerCert(ca.cert.get(), cert->get(), cert_path); !s) return s;
  if (auto s = writeKey(key_path, key->get()); !s) return s;
  if (auto s = writeCert(cert_path, cert->get()); !s) return s;
  log::notice("dev mode: created server certificate " + cert_path + " (localhost, 127.0.0.1, ::1)");
  return okStatus();
}

Status ensureUsers(const std::string& users_path, const std::string& password_path) {
  if (exists(users_path)) {
    if (!exists(password_path)) {
      log::notice(
          "dev mode: " + users_path + " exists without " + password_path +
          "; leaving both alone (set a password with `jobworker-admin user passwd --users-file " +
          users_path + " admin`)");
    }
    return okStatus();
  }
  unsigned char raw[kPasswordBytes];
  randombytes_buf(raw, sizeof raw);
  char encoded[sodium_base64_ENCODED_LEN(kPasswordBytes, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
  sodium_bin2base64(encoded, sizeof encoded, raw, sizeof raw,
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  sodium_memzero(raw, sizeof raw);
  const std::string password(encoded);
  sodium_memzero(encoded, sizeof encoded);

  auto hash = hashPassword(password);
  if (!hash) return hash.error();
  // Password file first: if we stop between the two writes, the next start sees no users file
  // and makes both again, never a users file whose password nobody can read.
  if (auto s = writeFileAtomic(password_path, password, 0600); !s) return s;
  UserRecord admin;
  admin.name = "admin";
  admin.password_hash = hash.value();
  admin.role = protocol::Role::kAdmin;
  admin.run_as = "nobody";
  if (auto s = saveUsersFile(users_path, {admin}); !s) return s;
  log::notice("dev mode: created " + users_path + " with user admin (password in " + password_path +
              ")");
  return okStatus();
}

}  // namespace

Result<DevFiles> ensureDevFiles(const std::string& state_dir) {
  if (state_dir.empty()) return Error{"empty state directory"};
  if (sodium_init() < 0) return Error{"libsodium initialisation failed"};
  std::string dir = state_dir;
  if (dir[0] != '/') {
    // Absolute paths from here on: the paths returned are handed to the frontend.
    char cwd[4096];
    if (::getcwd(cwd, sizeof cwd) == nullptr) return sysError("getcwd");
    dir = std::string(cwd) + "/" + dir;
  }
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  if (auto s = makeStateDir(dir); !s) return s.error();

  DevFiles f = devFilesIn(dir);

  auto ca = ensureCa(dir + "/ca.key", f.ca_cert);
  if (!ca) return ca.error();
  if (auto s = ensureServerCert(ca.value(), f.server_key, f.server_cert); !s) return s.error();
  if (auto s = ensureUsers(f.users_file, f.admin_password); !s) return s.error();
  return f;
}

}  // namespace jw::admin
