/*
 * The cluster's certificates (cluster/cl_pki.c): a CA dir with its files
 * and modes, node certificates, refusals to overwrite, unique serials, and
 * that a certificate from another CA does not verify against ours.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "cluster/cl_pki.h"
#include "net/xport.h"

static char tmpdir[64];

static void path_of(char *out, size_t len, const char *rel)
{
	snprintf(out, len, "%s/%s", tmpdir, rel);
}

static mode_t mode_of(const char *rel)
{
	char p[256];
	struct stat st;

	path_of(p, sizeof(p), rel);
	assert_int_equal(stat(p, &st), 0);
	return st.st_mode & 0777;
}

static X509 *load_cert(const char *rel)
{
	char p[256];
	FILE *f;
	X509 *c;

	path_of(p, sizeof(p), rel);
	f = fopen(p, "r");
	assert_non_null(f);
	c = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(c);
	return c;
}

/* Whether cert verifies against the CA in ca_rel for TLS client use. */
static bool verifies(const char *ca_rel, const char *cert_rel)
{
	X509 *ca = load_cert(ca_rel), *cert = load_cert(cert_rel);
	X509_STORE *st = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	bool ok;

	assert_int_equal(X509_STORE_add_cert(st, ca), 1);
	assert_int_equal(X509_STORE_CTX_init(ctx, st, cert, NULL), 1);
	X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
	ok = X509_verify_cert(ctx) == 1;
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(st);
	X509_free(cert);
	X509_free(ca);
	return ok;
}

static void serial_of(const char *rel, char *serial, size_t len)
{
	char p[256], err[256];

	path_of(p, sizeof(p), rel);
	assert_int_equal(cl_pki_cert_serial(p, serial, len, err, sizeof(err)), 0);
}

static void test_init(void **state)
{
	char dir[128], err[256], p[256], buf[64] = "";
	struct xport_tls t;
	FILE *f;

	path_of(dir, sizeof(dir), "ca1");
	assert_int_equal(cl_pki_init(dir, "prod-1", err, sizeof(err)), 0);
	assert_int_equal(mode_of("ca1/ca.key"), 0600);
	assert_int_equal(mode_of("ca1/ca.pem"), 0644);
	assert_int_equal(mode_of("ca1/authkey") & 0077, 0);
	assert_int_equal(mode_of("ca1/admin/key.pem"), 0600);
	path_of(p, sizeof(p), "ca1/cluster.name");
	f = fopen(p, "r");
	assert_non_null(f);
	assert_non_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	assert_string_equal(buf, "prod-1\n");
	path_of(p, sizeof(p), "ca1/admin");
	assert_int_equal(xport_tls_from_dir(p, &t, err), 0);
	assert_true(verifies("ca1/ca.pem", "ca1/admin/cert.pem"));

	/* The CA's own certificate is a CA. */
	X509 *ca = load_cert("ca1/ca.pem");

	assert_int_equal(X509_check_ca(ca), 1);
	X509_free(ca);
}

static void test_refuse_overwrite(void **state)
{
	char dir[128], err[256] = "";

	path_of(dir, sizeof(dir), "ca1");
	assert_int_equal(cl_pki_init(dir, "again", err, sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, "refusing"));
	assert_int_equal(cl_pki_issue_node(dir, "n1", "10.0.0.1", err, sizeof(err)), 0);
	assert_int_equal(cl_pki_issue_node(dir, "n1", "10.0.0.1", err, sizeof(err)),
			 -EEXIST);
	assert_non_null(strstr(err, "n1"));
}

static void test_bad_input(void **state)
{
	char dir[128], err[256] = "";
	struct stat st;

	path_of(dir, sizeof(dir), "bad");
	assert_int_equal(cl_pki_init(dir, "a b", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not valid"));
	assert_int_not_equal(stat(dir, &st), 0);   /* nothing made */
	path_of(dir, sizeof(dir), "ca1");
	assert_int_equal(cl_pki_issue_node(dir, "-x", "10.0.0.1", err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(cl_pki_issue_node(dir, "n9", "10.0.0.1 ;", err, sizeof(err)),
			 -EINVAL);
	path_of(dir, sizeof(dir), "nothing-here");
	assert_int_equal(cl_pki_issue_node(dir, "n1", "10.0.0.1", err, sizeof(err)),
			 -ENOENT);
	assert_non_null(strstr(err, "cluster init"));
}

static void test_node(void **state)
{
	char dir[128], err[256], p[256];
	unsigned char a[256], b[256];
	struct xport_tls t;
	X509 *c;
	FILE *f;

	path_of(dir, sizeof(dir), "ca1");
	assert_int_equal(cl_pki_issue_node(dir, "host2", "127.0.0.1", err, sizeof(err)), 0);
	path_of(p, sizeof(p), "ca1/nodes/host2");
	assert_int_equal(xport_tls_from_dir(p, &t, err), 0);
	assert_int_equal(mode_of("ca1/nodes/host2/key.pem"), 0600);
	assert_true(verifies("ca1/ca.pem", "ca1/nodes/host2/cert.pem"));
	c = load_cert("ca1/nodes/host2/cert.pem");
	assert_int_equal(X509_check_host(c, "host2", 0, 0, NULL), 1);
	assert_int_equal(X509_check_ip_asc(c, "127.0.0.1", 0), 1);
	assert_int_equal(X509_check_purpose(c, X509_PURPOSE_SSL_SERVER, 0), 1);
	assert_int_equal(X509_check_ca(c), 0);
	X509_free(c);

	/* The corosync key is the cluster's, copied. */
	path_of(p, sizeof(p), "ca1/authkey");
	f = fopen(p, "r");
	assert_int_equal(fread(a, 1, sizeof(a), f), sizeof(a));
	fclose(f);
	path_of(p, sizeof(p), "ca1/nodes/host2/authkey");
	f = fopen(p, "r");
	assert_int_equal(fread(b, 1, sizeof(b), f), sizeof(b));
	fclose(f);
	assert_memory_equal(a, b, sizeof(a));
}

static void test_serials_differ(void **state)
{
	char dir[128], err[256], s1[80], s2[80], s3[80];

	path_of(dir, sizeof(dir), "ca1");
	assert_int_equal(cl_pki_issue_node(dir, "n2", "node2.example", err, sizeof(err)), 0);
	serial_of("ca1/admin/cert.pem", s1, sizeof(s1));
	serial_of("ca1/nodes/n1/cert.pem", s2, sizeof(s2));
	serial_of("ca1/nodes/n2/cert.pem", s3, sizeof(s3));
	assert_string_not_equal(s1, s2);
	assert_string_not_equal(s2, s3);
	assert_string_not_equal(s1, s3);
	/* 128 random bits, top bit set: 32 lower-case hex digits. */
	assert_int_equal(strlen(s1), 32);
	assert_int_equal(strspn(s1, "0123456789abcdef"), 32);
}

static void test_other_ca(void **state)
{
	char dir[128], err[256];

	path_of(dir, sizeof(dir), "ca2");
	assert_int_equal(cl_pki_init(dir, "other", err, sizeof(err)), 0);
	assert_int_equal(cl_pki_issue_node(dir, "n1", "10.0.0.1", err, sizeof(err)), 0);
	assert_false(verifies("ca1/ca.pem", "ca2/nodes/n1/cert.pem"));
	assert_false(verifies("ca1/ca.pem", "ca2/admin/cert.pem"));
	assert_true(verifies("ca2/ca.pem", "ca2/nodes/n1/cert.pem"));
}

static int group_setup(void **state)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/ferry-pki-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int group_teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) ? -1 : 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init),
		cmocka_unit_test(test_refuse_overwrite),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_node),
		cmocka_unit_test(test_serials_differ),
		cmocka_unit_test(test_other_ca),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
