/*
 * The cluster's certificates (cl_pki.h), with OpenSSL 3: EC P-256 keys,
 * certificates built and signed here rather than by the openssl CLI, so
 * that clusterctl needs nothing else installed. Every file is created with
 * O_EXCL: an existing CA or node is never overwritten, and a half-made
 * one is removed again, so a failed run can simply be repeated.
 */
#include "cl_pki.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "cl_err.h"
#include "cl_net.h"
#include "core/util.h"

/* Defaults and limits of the cluster PKI. */
static const struct {
	int ca_days;
	int cert_days;
	long backdate_s;        /* notBefore in the past: nodes' clocks differ */
	int serial_bits;
	size_t address_max;
} pki_limits = {
	.ca_days = 3650,
	.cert_days = 1825,
	.backdate_s = 3600,
	.serial_bits = 128,
	.address_max = 253,
};

#define PKI_MAX_FILES 8
#define PKI_AUTHKEY_BYTES 256  /* corosync knet takes 1024..4096 bits */

/* Files one operation created, to take back if it fails half-way. */
struct pki_files {
	char dir[PATH_MAX];
	const char *made[PKI_MAX_FILES];
	int n;
	bool made_dir;
};

/* The OpenSSL reason for the last failure, and a clean error queue. */
static const char *ossl_why(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();
	const char *s = e ? ERR_reason_error_string(e) : NULL;

	if (!s && e) {
		ERR_error_string_n(e, buf, len);
		s = buf;
	}
	ERR_clear_error();
	return s ? s : "unknown OpenSSL error";
}

static int pki_write(struct pki_files *f, const char *name, const void *data,
		     size_t len, mode_t mode, char *err, size_t err_len)
{
	char path[PATH_MAX + 64];
	int fd, ret;

	snprintf(path, sizeof(path), "%s/%s", f->dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0) {
		ret = -errno;
		cl_errf(err, err_len, "%s: %s%s", path, strerror(-ret),
			 ret == -EEXIST ? " (refusing to overwrite it)" : "");
		return ret;
	}
	f->made[f->n++] = name;
	/* The umask must not loosen or tighten what the file is for. */
	ret = fchmod(fd, mode) ? -errno : write_full(fd, data, len);
	if (!ret && fsync(fd))
		ret = -errno;
	close(fd);
	if (ret)
		cl_errf(err, err_len, "write %s: %s", path, strerror(-ret));
	return ret;
}

/* Take back what a failed operation made. */
static void pki_undo(struct pki_files *f)
{
	char path[PATH_MAX + 64];

	while (f->n > 0) {
		snprintf(path, sizeof(path), "%s/%s", f->dir, f->made[--f->n]);
		unlink(path);
	}
	if (f->made_dir)
		rmdir(f->dir);
}

/* PEM of a key or a certificate, then into a new file. */
static int pki_write_pem(struct pki_files *f, const char *name, EVP_PKEY *key,
			 X509 *cert, mode_t mode, char *err, size_t err_len)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data, eb[128];
	long len;
	int ok, ret;

	if (!b)
		return -ENOMEM;
	ok = key ? PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL) :
		   PEM_write_bio_X509(b, cert);
	if (!ok) {
		cl_errf(err, err_len, "%s/%s: cannot encode: %s", f->dir, name,
			 ossl_why(eb, sizeof(eb)));
		BIO_free(b);
		return -EINVAL;
	}
	len = BIO_get_mem_data(b, &data);
	ret = pki_write(f, name, data, (size_t)len, mode, err, err_len);
	OPENSSL_cleanse(data, (size_t)len);   /* it may be a private key */
	BIO_free(b);
	return ret;
}

static int pki_read_file(const char *path, void *buf, size_t len, char *err,
			 size_t err_len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret;

	if (fd < 0) {
		ret = -errno;
		cl_errf(err, err_len, "%s: %s", path, strerror(-ret));
		return ret;
	}
	ret = read_full(fd, buf, len);
	close(fd);
	if (ret)
		cl_errf(err, err_len, "read %s: %s", path,
			 ret == -EPIPE ? "the file is too short" : strerror(-ret));
	return ret;
}

/* ---- certificates ---- */

static EVP_PKEY *pki_keygen(void)
{
	return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

static int pki_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!ext)
		return -EINVAL;
	ok = X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -ENOMEM;
}

/* A random positive serial of exactly serial_bits: unique without state. */
static int pki_serial(X509 *cert)
{
	BIGNUM *bn = BN_new();
	int ret = -EIO;

	if (bn && BN_rand(bn, pki_limits.serial_bits, BN_RAND_TOP_ONE,
			  BN_RAND_BOTTOM_ANY) &&
	    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)))
		ret = 0;
	BN_free(bn);
	return ret;
}

/*
 * A certificate for key, CN=cn, signed by ca_key; issuer NULL makes it the
 * self-signed CA, otherwise a TLS server and client certificate with the
 * SAN list san.
 */
static X509 *pki_cert(const char *cn, EVP_PKEY *key, X509 *issuer,
		      EVP_PKEY *ca_key, const char *san)
{
	X509 *cert = X509_new();
	X509_NAME *subj = X509_NAME_new();
	bool ca = !issuer;
	int days = ca ? pki_limits.ca_days : pki_limits.cert_days;
	int ret = -ENOMEM;

	if (!cert || !subj)
		goto out;
	if (!X509_set_version(cert, X509_VERSION_3) || pki_serial(cert) ||
	    !X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_UTF8,
					(const unsigned char *)cn, -1, -1, 0) ||
	    !X509_set_subject_name(cert, subj) ||
	    !X509_set_issuer_name(cert, ca ? subj :
				  X509_get_subject_name(issuer)) ||
	    !X509_gmtime_adj(X509_getm_notBefore(cert), -pki_limits.backdate_s) ||
	    !X509_time_adj_ex(X509_getm_notAfter(cert), days, 0, NULL) ||
	    !X509_set_pubkey(cert, key))
		goto out;
	if (ca)
		ret = pki_ext(cert, cert, NID_basic_constraints, "critical,CA:TRUE") ?:
		      pki_ext(cert, cert, NID_key_usage, "critical,keyCertSign,cRLSign") ?:
		      pki_ext(cert, cert, NID_subject_key_identifier, "hash");
	else
		ret = pki_ext(cert, issuer, NID_basic_constraints, "critical,CA:FALSE") ?:
		      pki_ext(cert, issuer, NID_key_usage, "critical,digitalSignature") ?:
		      pki_ext(cert, issuer, NID_ext_key_usage, "serverAuth,clientAuth") ?:
		      pki_ext(cert, issuer, NID_subject_alt_name, san) ?:
		      pki_ext(cert, issuer, NID_subject_key_identifier, "hash") ?:
		      pki_ext(cert, issuer, NID_authority_key_identifier, "keyid:always");
	if (!ret && !X509_sign(cert, ca_key, EVP_sha256()))
		ret = -EINVAL;
out:
	X509_NAME_free(subj);
	if (ret) {
		X509_free(cert);
		return NULL;
	}
	return cert;
}

/* The CA of a CA dir, and its corosync key. */
struct pki_ca {
	X509 *cert;
	EVP_PKEY *key;
	unsigned char authkey[PKI_AUTHKEY_BYTES];
};

static void pki_ca_free(struct pki_ca *ca)
{
	X509_free(ca->cert);
	EVP_PKEY_free(ca->key);
	OPENSSL_cleanse(ca->authkey, sizeof(ca->authkey));
}

static int pki_ca_load(const char *dir, struct pki_ca *ca, char *err,
		       size_t err_len)
{
	char path[PATH_MAX], eb[128];
	FILE *f;
	int ret;

	memset(ca, 0, sizeof(*ca));
	snprintf(path, sizeof(path), "%s/ca.pem", dir);
	f = fopen(path, "r");
	if (!f)
		goto sys;
	ca->cert = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (!ca->cert)
		goto bad;
	snprintf(path, sizeof(path), "%s/ca.key", dir);
	f = fopen(path, "r");
	if (!f)
		goto sys;
	ca->key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (!ca->key)
		goto bad;
	if (X509_check_private_key(ca->cert, ca->key) != 1) {
		ERR_clear_error();
		cl_errf(err, err_len, "%s/ca.key does not match %s/ca.pem", dir, dir);
		pki_ca_free(ca);
		return -EINVAL;
	}
	snprintf(path, sizeof(path), "%s/authkey", dir);
	return pki_read_file(path, ca->authkey, sizeof(ca->authkey), err, err_len);
sys:
	ret = -errno;
	cl_errf(err, err_len, "%s: %s%s", path, strerror(-ret),
		 ret == -ENOENT ? " (is this a CA dir made by "
		 "'clusterctl cluster init'?)" : "");
	pki_ca_free(ca);
	return ret;
bad:
	cl_errf(err, err_len, "%s: %s", path, ossl_why(eb, sizeof(eb)));
	pki_ca_free(ca);
	return -EINVAL;
}

/*
 * A new directory holding ca.pem, cert.pem and key.pem (and the corosync
 * key for a node): what xport_tls_from_dir() reads.
 */
static int pki_issue(const struct pki_ca *ca, const char *out_dir,
		     const char *cn, const char *san, bool authkey, char *err,
		     size_t err_len)
{
	struct pki_files f = { .n = 0 };
	EVP_PKEY *key = pki_keygen();
	X509 *cert = NULL;
	char eb[128];
	int ret = -ENOMEM;

	snprintf(f.dir, sizeof(f.dir), "%s", out_dir);
	if (!key || !(cert = pki_cert(cn, key, ca->cert, ca->key, san))) {
		cl_errf(err, err_len, "certificate for %s: %s", cn,
			 ossl_why(eb, sizeof(eb)));
		goto out;
	}
	if (mkdir(out_dir, 0755)) {
		ret = -errno;
		cl_errf(err, err_len, "%s: %s%s", out_dir, strerror(errno),
			 ret == -EEXIST ? " (refusing to overwrite it)" : "");
		goto out;
	}
	f.made_dir = true;
	ret = pki_write_pem(&f, "key.pem", key, NULL, 0600, err, err_len) ?:
	      pki_write_pem(&f, "cert.pem", NULL, cert, 0644, err, err_len) ?:
	      pki_write_pem(&f, "ca.pem", NULL, ca->cert, 0644, err, err_len);
	if (!ret && authkey)
		ret = pki_write(&f, "authkey", ca->authkey, sizeof(ca->authkey),
				0400, err, err_len);
	if (ret)
		pki_undo(&f);
out:
	X509_free(cert);
	EVP_PKEY_free(key);
	return ret;
}

/* ---- the CA dir ---- */

static int pki_check_free(const char *dir, char *err, size_t err_len)
{
	static const char *const names[] = { "ca.pem", "ca.key", "authkey",
					     "cluster.name", "admin", "nodes" };
	char path[PATH_MAX + 16];
	struct stat st;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		if (!lstat(path, &st)) {
			cl_errf(err, err_len, "%s already holds a cluster CA "
				 "(%s exists): refusing to overwrite it", dir,
				 names[i]);
			return -EEXIST;
		}
	}
	return 0;
}

int cl_pki_init(const char *dir, const char *cluster_name, char *err, size_t err_len)
{
	struct pki_files f = { .n = 0 };
	struct pki_ca ca = { .cert = NULL };
	char path[PATH_MAX + 16], cn[128], eb[128];
	int ret;

	if (!cl_name_valid(cluster_name)) {
		cl_errf(err, err_len, "cluster name '%.64s' is not valid "
			 "(1..63 of A-Z a-z 0-9 _ . -)", cluster_name);
		return -EINVAL;
	}
	if (strlen(dir) > PATH_MAX - 64) {
		cl_errf(err, err_len, "%.64s...: path too long", dir);
		return -ENAMETOOLONG;
	}
	snprintf(f.dir, sizeof(f.dir), "%s", dir);
	if (mkdir(dir, 0700) == 0) {
		f.made_dir = true;
	} else if (errno != EEXIST) {
		ret = -errno;
		cl_errf(err, err_len, "%s: %s", dir, strerror(errno));
		return ret;
	}
	ret = pki_check_free(dir, err, err_len);
	if (ret)
		goto out;
	snprintf(cn, sizeof(cn), "Ferry cluster %s CA", cluster_name);
	ca.key = pki_keygen();
	ca.cert = ca.key ? pki_cert(cn, ca.key, NULL, ca.key, NULL) : NULL;
	if (!ca.cert || RAND_bytes(ca.authkey, sizeof(ca.authkey)) != 1) {
		cl_errf(err, err_len, "CA: %s", ossl_why(eb, sizeof(eb)));
		ret = -EIO;
		goto out;
	}
	ret = pki_write_pem(&f, "ca.key", ca.key, NULL, 0600, err, err_len) ?:
	      pki_write_pem(&f, "ca.pem", NULL, ca.cert, 0644, err, err_len) ?:
	      pki_write(&f, "authkey", ca.authkey, sizeof(ca.authkey), 0400,
			err, err_len);
	if (!ret) {
		snprintf(path, sizeof(path), "%s\n", cluster_name);
		ret = pki_write(&f, "cluster.name", path, strlen(path), 0644,
				err, err_len);
	}
	if (ret)
		goto out;
	snprintf(path, sizeof(path), "%s/nodes", dir);
	if (mkdir(path, 0755)) {
		ret = -errno;
		cl_errf(err, err_len, "%s: %s", path, strerror(errno));
		goto out;
	}
	snprintf(path, sizeof(path), "%s/admin", dir);
	ret = pki_issue(&ca, path, "admin", "DNS:admin", false, err, err_len);
	if (ret) {
		snprintf(path, sizeof(path), "%s/nodes", dir);
		rmdir(path);
	}
out:
	if (ret)
		pki_undo(&f);
	pki_ca_free(&ca);
	return ret;
}

static bool pki_address_valid(const char *a, bool *is_ip)
{
	unsigned char bin[16];
	size_t len = strlen(a);

	*is_ip = inet_pton(AF_INET, a, bin) == 1 || inet_pton(AF_INET6, a, bin) == 1;
	if (*is_ip)
		return true;
	if (!len || len > pki_limits.address_max || a[0] == '-' || a[0] == '.')
		return false;
	return strspn(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		      "0123456789.-") == len;
}

int cl_pki_issue_node(const char *dir, const char *name, const char *address,
		      char *err, size_t err_len)
{
	struct pki_ca ca;
	char path[PATH_MAX + 16], san[512];
	struct stat st;
	bool is_ip;
	int ret;

	if (!cl_name_valid(name)) {
		cl_errf(err, err_len, "node name '%.64s' is not valid "
			 "(1..63 of A-Z a-z 0-9 _ . -)", name);
		return -EINVAL;
	}
	if (!pki_address_valid(address, &is_ip)) {
		cl_errf(err, err_len, "node %s: address '%.64s' is neither an "
			 "IP address nor a host name", name, address);
		return -EINVAL;
	}
	if (strlen(dir) > PATH_MAX - 128) {
		cl_errf(err, err_len, "%.64s...: path too long", dir);
		return -ENAMETOOLONG;
	}
	snprintf(path, sizeof(path), "%s/nodes/%s", dir, name);
	if (!lstat(path, &st)) {
		cl_errf(err, err_len, "node %s already has a certificate in %s: "
			 "refusing to overwrite it", name, path);
		return -EEXIST;
	}
	ret = pki_ca_load(dir, &ca, err, err_len);
	if (ret)
		return ret;
	snprintf(path, sizeof(path), "%s/nodes", dir);
	if (mkdir(path, 0755) && errno != EEXIST) {
		ret = -errno;
		cl_errf(err, err_len, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (!strcmp(name, address))
		snprintf(san, sizeof(san), "DNS:%s", name);
	else
		snprintf(san, sizeof(san), "DNS:%s,%s:%s", name,
			 is_ip ? "IP" : "DNS", address);
	snprintf(path, sizeof(path), "%s/nodes/%s", dir, name);
	ret = pki_issue(&ca, path, name, san, true, err, err_len);
out:
	pki_ca_free(&ca);
	return ret;
}

int cl_pki_cert_serial(const char *pem_path, char *serial, size_t len,
		       char *err, size_t err_len)
{
	char xerr[XPORT_ERR_LEN];
	int ret = xport_tls_cert_identity(pem_path, NULL, 0, serial, len, xerr);

	if (ret)
		cl_errf(err, err_len, "%s", xerr);
	return ret;
}
