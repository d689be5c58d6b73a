/*
 * clusterctl <-> clusterd (cluster/cl_net.c, cl_request.c, cl_server.c):
 * frames over a socketpair, what cl_request_decode accepts and refuses,
 * and a real server on a UNIX socket and on mutual TLS with certificates
 * from cl_pki: answers, a client from another CA, a revoked certificate,
 * clients that stall their handshake, and a stop with clients still
 * connected.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cluster/cl_msg.h"
#include "cluster/cl_net.h"
#include "cluster/cl_pki.h"
#include "core/util.h"

#define MiB (1024ull * 1024)

static char tmpdir[64];

/* ---- frames ---- */

static void pair(struct xport **a, struct xport **b)
{
	int sv[2];
	char err[XPORT_ERR_LEN];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(xport_wrap_fd(sv[0], "a", a, err), 0);
	assert_int_equal(xport_wrap_fd(sv[1], "b", b, err), 0);
}

static void test_frame_round_trip(void **state)
{
	Ferry__Cluster__Request r = FERRY__CLUSTER__REQUEST__INIT;
	Ferry__Cluster__VmStartReq n = FERRY__CLUSTER__VM_START_REQ__INIT;
	Ferry__Cluster__Request *got;
	struct xport *a, *b;
	char err[256];
	uint8_t *buf;
	size_t len;

	pair(&a, &b);
	n.name = "vm1";
	n.host = "host2";
	r.cmd_case = FERRY__CLUSTER__REQUEST__CMD_VM_START;
	r.vm_start = &n;
	assert_int_equal(cl_frame_send(a, &r.base), 0);
	assert_int_equal(cl_frame_recv(b, &buf, &len), 0);
	got = cl_request_decode(buf, len, err, sizeof(err));
	free(buf);
	assert_non_null(got);
	assert_int_equal(got->cmd_case, FERRY__CLUSTER__REQUEST__CMD_VM_START);
	assert_string_equal(got->vm_start->name, "vm1");
	assert_string_equal(got->vm_start->host, "host2");
	CL_FREE(got);
	/* EOF between frames is a clean end. */
	xport_close(a);
	assert_int_equal(cl_frame_recv(b, &buf, &len), -EPIPE);
	assert_null(buf);
	xport_close(b);
}

static void test_frame_bad(void **state)
{
	struct xport *a, *b;
	uint32_t be = htonl(100);
	uint8_t *buf;
	size_t len;

	/* Cut short inside the body. */
	pair(&a, &b);
	assert_int_equal(xport_send(a, &be, 4), 0);
	assert_int_equal(xport_send(a, "0123456789", 10), 0);
	xport_close(a);
	assert_int_equal(cl_frame_recv(b, &buf, &len), -EPROTO);
	assert_null(buf);
	xport_close(b);

	/* A length over CL_FRAME_MAX is refused before any allocation. */
	pair(&a, &b);
	be = htonl(CL_FRAME_MAX + 1);
	assert_int_equal(xport_send(a, &be, 4), 0);
	assert_int_equal(cl_frame_recv(b, &buf, &len), -EMSGSIZE);
	be = 0xffffffffu;
	assert_int_equal(xport_send(a, &be, 4), 0);
	assert_int_equal(cl_frame_recv(b, &buf, &len), -EMSGSIZE);
	xport_close(a);
	xport_close(b);
}

/* ---- cl_request_decode ---- */

static Ferry__Cluster__Request *decode(const Ferry__Cluster__Request *r,
				       char *err, size_t err_len)
{
	size_t len = protobuf_c_message_get_packed_size(&r->base);
	uint8_t *buf = malloc(len + 1);
	Ferry__Cluster__Request *got;

	protobuf_c_message_pack(&r->base, buf);
	got = cl_request_decode(buf, len, err, err_len);
	free(buf);
	if (!got)
		assert_true(err[0]);
	return got;
}

static void vm_good(Ferry__Cluster__Vm *vm)
{
	ferry__cluster__vm__init(vm);
	vm->name = "vm1";
	vm->guest = "/srv/guests/counter.elf";
	vm->args = "rate=100";
	vm->mem_bytes = 64 * MiB;
	vm->vcpus = 2;
	vm->cpu_model = "x86-64-v2";
}

/* vm_create with vm: NULL when refused, with the reason in err. */
static bool vm_create_ok(Ferry__Cluster__Vm *vm, char *err, size_t len)
{
	Ferry__Cluster__Request r = FERRY__CLUSTER__REQUEST__INIT;
	Ferry__Cluster__Request *got;

	r.cmd_case = FERRY__CLUSTER__REQUEST__CMD_VM_CREATE;
	r.vm_create = vm;
	err[0] = 0;
	got = decode(&r, err, len);
	CL_FREE(got);
	return got != NULL;
}

static void test_decode_good(void **state)
{
	Ferry__Cluster__Request r = FERRY__CLUSTER__REQUEST__INIT;
	Ferry__Cluster__Empty e = FERRY__CLUSTER__EMPTY__INIT;
	Ferry__Cluster__MigrateReq m = FERRY__CLUSTER__MIGRATE_REQ__INIT;
	Ferry__Cluster__RevokeReq rv = FERRY__CLUSTER__REVOKE_REQ__INIT;
	Ferry__Cluster__Vm vm;
	Ferry__Cluster__Request *got;
	char err[256] = "";

	r.cmd_case = FERRY__CLUSTER__REQUEST__CMD_STATUS;
	r.status = &e;
	got = decode(&r, err, sizeof(err));
	assert_non_null(got);
	CL_FREE(got);

	m.vm = "vm_1.a";
	m.host = "host-2";
	r.cmd_case = FERRY__CLUSTER__REQUEST__CMD_MIGRATE;
	r.migrate = &m;
	got = decode(&r, err, sizeof(err));
	assert_non_null(got);
	CL_FREE(got);

	rv.serial = "9f3a";
	r.cmd_case = FERRY__CLUSTER__REQUEST__CMD_REVOKE;
	r.revoke = &rv;
	got = decode(&r, err, sizeof(err));
	assert_non_null(got);
	CL_FREE(got);

	vm_good(&vm);
	assert_true(vm_create_ok(&vm, err, sizeof(err)));
	vm.mem_bytes = 8 * MiB;
	vm.vcpus = 32;
	vm.args = "";
	vm.cpu_model = "";
	assert_true(vm_create_ok(&vm, err, sizeof(err)));
	vm.mem_bytes = 128ull << 30;
	assert_true(vm_create_ok(&vm, err, sizeof(err)));
}

static void test_decode_bad(void **state)
{
	Ferry__Cluster__Request r = FERRY__CLUSTER__REQUEST__INIT;
	Ferry__Cluster__Name n = FERRY__CLUSTER__NAME__INIT;
	Ferry__Cluster__MigrateReq m = FERRY__CLUSTER__MIGRATE_REQ__INIT;
	Ferry__Cluster__CmdVmSet set = FERRY__CLUSTER__CMD_VM_SET__INIT;
	Ferry__Cluster__CmdMigSet ms = FERRY__CLUSTER__CMD_MIG_SET__INIT;
	Ferry__Cluster__Request *ok;
	Ferry__Cluster__Vm vm;
	static char args[1100];
	char err[256];
	static const uint8_t garbage[] = { 0xff, 0xff, 0xff, 0xff, 0x0f, 0x32 };

	/* No command at all. */
	assert_null(decode(&r, err, sizeof(err)));
	assert_non_null(strstr(err, "no command"));
	assert_null(cl_request_decode(garbage, sizeof(garbage), err, sizeof(err)));
	assert_true(err[0]);

	/* Names. */
	r.cmd_case = FERRY__CLUSTER__REQUEST__CMD_VM_STOP;
	r.vm_stop = &n;
	assert_null(decode(&r, err, sizeof(err)));      /* "" */
	n.name = "-rf";
	assert_null(decode(&r, err, sizeof(err)));
	n.name = "a/b";
	assert_null(decode(&r, err, sizeof(err)));
	assert_string_equal(err, "vm stop: vm 'a/b' is not valid "
			    "(1..63 of A-Z a-z 0-9 _ . -)");
	n.name = "a234567890123456789012345678901234567890123456789012345678901234";
	assert_null(decode(&r, err, sizeof(err)));
	r.cmd_case = FERRY__CLUSTER__REQUEST__CMD_HOST_REMOVE;
	r.host_remove = &n;
	n.name = "../x";
	assert_null(decode(&r, err, sizeof(err)));
	assert_string_equal(err, "host remove: host '../x' is not valid "
			    "(1..63 of A-Z a-z 0-9 _ . -)");
	r.cmd_case = FERRY__CLUSTER__REQUEST__CMD_MIGRATE_CANCEL;
	r.migrate_cancel = &n;
	assert_null(decode(&r, err, sizeof(err)));
	assert_string_equal(err, "migrate-cancel: vm '../x' is not valid "
			    "(1..63 of A-Z a-z 0-9 _ . -)");
	n.name = "vm1";
	ok = decode(&r, err, sizeof(err));
	assert_non_null(ok);
	assert_string_equal(ok->migrate_cancel->name, "vm1");
	CL_FREE(ok);
	r.cmd_case = FERRY__CLUSTER__REQUEST__CMD_VM_RESUME;
	r.vm_resume = &n;
	n.name = "vm/1";
	assert_null(decode(&r, err, sizeof(err)));
	assert_string_equal(err, "vm resume: vm 'vm/1' is not valid "
			    "(1..63 of A-Z a-z 0-9 _ . -)");
	n.name = "vm1";
	ok = decode(&r, err, sizeof(err));
	assert_non_null(ok);
	assert_string_equal(ok->vm_resume->name, "vm1");
	CL_FREE(ok);
	r.cmd_case = FERRY__CLUSTER__REQUEST__CMD_VM_PAUSE;
	r.vm_pause = &n;
	n.name = "../x";
	assert_null(decode(&r, err, sizeof(err)));
	assert_string_equal(err, "vm pause: vm '../x' is not valid "
			    "(1..63 of A-Z a-z 0-9 _ . -)");
	n.name = "vm1";
	ok = decode(&r, err, sizeof(err));
	assert_non_null(ok);
	assert_string_equal(ok->vm_pause->name, "vm1");
	CL_FREE(ok);
	n.name = "../x";
	r.cmd_case = FERRY__CLUSTER__REQUEST__CMD_VM_SET;
	r.vm_set = &set;
	set.name = "vm1";
	assert_null(decode(&r, err, sizeof(err)));
	assert_string_equal(err, "vm set: nothing to change");
	set.set_ha = true;
	set.name = "v m";
	assert_null(decode(&r, err, sizeof(err)));
	assert_non_null(strstr(err, "vm set: vm 'v m' is not valid"));
	set.name = "vm1";
	ok = decode(&r, err, sizeof(err));
	assert_non_null(ok);
	assert_true(ok->vm_set->set_ha);
	CL_FREE(ok);
	/* A priority alone is a change; one no build knows is refused. */
	set.set_ha = false;
	set.set_priority = true;
	set.priority = FERRY__CLUSTER__VM_PRIORITY__VM_PRIORITY_HIGH;
	ok = decode(&r, err, sizeof(err));
	assert_non_null(ok);
	assert_int_equal(ok->vm_set->priority, FERRY__CLUSTER__VM_PRIORITY__VM_PRIORITY_HIGH);
	CL_FREE(ok);
	set.priority = (Ferry__Cluster__VmPriority)7;
	assert_null(decode(&r, err, sizeof(err)));
	assert_string_equal(err, "vm set: unknown priority 7");
	/* migrate-set: something to change, and no downtime target of 0 */
	r.cmd_case = FERRY__CLUSTER__REQUEST__CMD_MIGRATE_SET;
	r.migrate_set = &ms;
	ms.vm = "vm1";
	assert_null(decode(&r, err, sizeof(err)));
	assert_string_equal(err, "migrate-set: nothing to change");
	ms.set_downtime = true;
	assert_null(decode(&r, err, sizeof(err)));
	assert_string_equal(err, "migrate-set: the downtime target must be at least 1 ms");
	ms.set_downtime = false;
	ms.set_bandwidth = true;  /* 0: the cap lifted */
	ms.vm = "../x";
	assert_null(decode(&r, err, sizeof(err)));
	assert_non_null(strstr(err, "migrate-set: vm '../x' is not valid"));
	ms.vm = "vm1";
	ok = decode(&r, err, sizeof(err));
	assert_non_null(ok);
	assert_true(ok->migrate_set->set_bandwidth);
	assert_int_equal(ok->migrate_set->bandwidth_mbps, 0);
	CL_FREE(ok);
	r.cmd_case = FERRY__CLUSTER__REQUEST__CMD_VM_STOP;
	m.vm = "vm1";
	m.host = "h\n1";
	r.cmd_case = FERRY__CLUSTER__REQUEST__CMD_MIGRATE;
	r.migrate = &m;
	assert_null(decode(&r, err, sizeof(err)));
	assert_non_null(strstr(err, "'h?1'"));

	vm_good(&vm);
	vm.name = "a b";
	assert_false(vm_create_ok(&vm, err, sizeof(err)));
	assert_string_equal(err, "vm create: name 'a b' is not valid "
			    "(1..63 of A-Z a-z 0-9 _ . -)");
	vm_good(&vm);
	vm.mem_bytes = 65 * MiB;
	assert_false(vm_create_ok(&vm, err, sizeof(err)));
	assert_non_null(strstr(err, "multiple of 2 MiB"));
	vm.mem_bytes = 4 * MiB;
	assert_false(vm_create_ok(&vm, err, sizeof(err)));
	vm.mem_bytes = (128ull << 30) + 2 * MiB;
	assert_false(vm_create_ok(&vm, err, sizeof(err)));
	vm_good(&vm);
	vm.vcpus = 0;
	assert_false(vm_create_ok(&vm, err, sizeof(err)));
	assert_non_null(strstr(err, "vCPUs"));
	vm.vcpus = 33;
	assert_false(vm_create_ok(&vm, err, sizeof(err)));
	vm_good(&vm);
	memset(args, 'x', 1024);
	vm.args = args;
	assert_false(vm_create_ok(&vm, err, sizeof(err)));
	assert_non_null(strstr(err, "args"));
	args[1023] = 0;
	assert_true(vm_create_ok(&vm, err, sizeof(err)));
	vm_good(&vm);
	vm.guest = "";
	assert_false(vm_create_ok(&vm, err, sizeof(err)));

	/* NICs: vmon's --net syntax, at most 4. */
	vm_good(&vm);
	vm.nets = (char *[]){ "bridge=vmbr0", "bridge=br1,mac=02:00:00:00:00:01", "bridge=a",
			      "bridge=b", "bridge=c" };
	vm.n_nets = 4;
	assert_true(vm_create_ok(&vm, err, sizeof(err)));
	vm.n_nets = 5;
	assert_false(vm_create_ok(&vm, err, sizeof(err)));
	assert_non_null(strstr(err, "at most 4 NICs"));
	vm.nets = (char *[]){ "bridge=vmbr0,mac=01:00:00:00:00:01" };
	vm.n_nets = 1;
	assert_false(vm_create_ok(&vm, err, sizeof(err)));
	assert_non_null(strstr(err, "net bridge=vmbr0,mac=01:00:00:00:00:01: mac=01:00:00:00:00:01: "
				    "not a unicast MAC address"));
}

/* config set: its shape here; keys and ranges are cl_settings' (test_cl_state). */
static void test_decode_config_set(void **state)
{
	Ferry__Cluster__Request r = FERRY__CLUSTER__REQUEST__INIT;
	Ferry__Cluster__CmdConfigSet c = FERRY__CLUSTER__CMD_CONFIG_SET__INIT;
	Ferry__Cluster__ConfigItem it[17], *v[17];
	Ferry__Cluster__Request *got;
	char err[256];

	for (int i = 0; i < 17; i++) {
		ferry__cluster__config_item__init(&it[i]);
		it[i].key = "link-mbps";
		it[i].value = 1000;
		v[i] = &it[i];
	}
	r.cmd_case = FERRY__CLUSTER__REQUEST__CMD_CONFIG_SET;
	r.config_set = &c;
	assert_null(decode(&r, err, sizeof(err)));
	assert_string_equal(err, "config set: 1..16 settings at once");
	c.items = v;
	c.n_items = 2;
	got = decode(&r, err, sizeof(err));
	assert_non_null(got);
	assert_int_equal(got->config_set->n_items, 2);
	assert_int_equal(got->config_set->items[1]->value, 1000);
	CL_FREE(got);
	c.n_items = 17;
	assert_null(decode(&r, err, sizeof(err)));
	c.n_items = 1;
	it[0].key = "";
	assert_null(decode(&r, err, sizeof(err)));
	it[0].key = "a;b";
	assert_null(decode(&r, err, sizeof(err)));
	assert_string_equal(err, "config set: key 'a;b' is not valid "
			    "(1..63 of A-Z a-z 0-9 _ . -)");
}

/* ---- servers ---- */

static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cl_peer seen;
static const char *revoked_serial;

static Ferry__Cluster__Response *handler(void *opaque,
		const Ferry__Cluster__Request *req, const struct cl_peer *peer)
{
	Ferry__Cluster__Response *r = CL_NEW(Ferry__Cluster__Response,
					     ferry__cluster__response__init);
	char msg[300];

	pthread_mutex_lock(&seen_lock);
	seen = *peer;
	pthread_mutex_unlock(&seen_lock);
	snprintf(msg, sizeof(msg), "hello %s", peer->name);
	cl_str_set(&r->message, msg);
	return r;
}

static bool is_revoked(void *opaque, const char *serial)
{
	return revoked_serial && !strcmp(serial, revoked_serial);
}

/* A status call; the answer's message, or NULL when the call failed. */
static char *call_status(struct xport *x, char *err, size_t len, int *error)
{
	Ferry__Cluster__Request r = FERRY__CLUSTER__REQUEST__INIT;
	Ferry__Cluster__Empty e = FERRY__CLUSTER__EMPTY__INIT;
	Ferry__Cluster__Response *resp;
	char *msg;

	r.cmd_case = FERRY__CLUSTER__REQUEST__CMD_STATUS;
	r.status = &e;
	if (cl_call(x, &r, 5000, &resp, err, len))
		return NULL;
	*error = resp->error;
	msg = strdup(resp->message);
	CL_FREE(resp);
	return msg;
}

static void test_unix_server(void **state)
{
	struct cl_server_cfg cfg = { .handler = handler, .revoked = is_revoked };
	Ferry__Cluster__Request r = FERRY__CLUSTER__REQUEST__INIT;
	Ferry__Cluster__Name n = FERRY__CLUSTER__NAME__INIT;
	Ferry__Cluster__Response *resp;
	struct cl_server *s, *s2;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct xport *x;
	char path[128], err[256], *msg;
	int error = 1, fd;

	snprintf(path, sizeof(path), "%s/clusterd.sock", tmpdir);
	/* Nobody there yet: the error says so. */
	assert_int_equal(cl_connect_unix(path, &x, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "is clusterd running?"));

	/* A stale socket file is replaced. */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	cfg.unix_path = path;
	assert_int_equal(cl_server_start(&cfg, &s, err, sizeof(err)), 0);
	/* A live one is not. */
	assert_int_equal(cl_server_start(&cfg, &s2, err, sizeof(err)), -EADDRINUSE);

	assert_int_equal(cl_connect_unix(path, &x, err, sizeof(err)), 0);
	msg = call_status(x, err, sizeof(err), &error);
	assert_non_null(msg);
	assert_int_equal(error, 0);
	assert_true(strncmp(msg, "hello uid ", 10) == 0);
	free(msg);
	assert_false(seen.tls);
	assert_int_equal(seen.uid, getuid());

	/* A bad request is answered, and the connection stays. */
	n.name = "no way";
	r.cmd_case = FERRY__CLUSTER__REQUEST__CMD_VM_SHOW;
	r.vm_show = &n;
	assert_int_equal(cl_call(x, &r, 5000, &resp, err, sizeof(err)), 0);
	assert_int_equal(resp->error, -EINVAL);
	assert_non_null(strstr(resp->message, "vm show: vm 'no way'"));
	CL_FREE(resp);
	msg = call_status(x, err, sizeof(err), &error);
	assert_non_null(msg);
	free(msg);

	/* Stop with the client still connected. */
	cl_server_stop(s);
	assert_null(call_status(x, err, sizeof(err), &error));
	xport_close(x);
	assert_int_equal(access(path, F_OK), -1);
}

static void tls_of(struct xport_tls *t, const char *rel)
{
	char dir[256], err[XPORT_ERR_LEN];

	snprintf(dir, sizeof(dir), "%s/%s", tmpdir, rel);
	assert_int_equal(xport_tls_from_dir(dir, t, err), 0);
}

/* A client that connects, asks, and is refused with error and words. */
static void call_refused(const struct xport_addr *addr, struct xport_tls *t, int error,
			 const char *words)
{
	char err[512], *msg;
	struct xport *x;
	int got = 0;

	assert_int_equal(cl_connect_tls(addr, t, 5000, &x, err, sizeof(err)), 0);
	msg = call_status(x, err, sizeof(err), &got);
	assert_non_null(msg);
	assert_int_equal(got, error);
	assert_non_null(strstr(msg, words));
	free(msg);
	xport_close(x);
}

static void test_tls_server(void **state)
{
	struct xport_addr addr = { .host = "127.0.0.1" };
	struct cl_server_cfg cfg = { .handler = handler, .revoked = is_revoked,
				     .tls_addr = &addr };
	struct xport_tls srv, adm, other;
	struct cl_server *s;
	struct xport *x, *idle;
	char err[512], serial[80], p[256], *msg;
	int error = 1;

	tls_of(&srv, "ca1/nodes/host1");
	tls_of(&adm, "ca1/admin");
	tls_of(&other, "ca2/admin");
	cfg.tls = &srv;
	assert_int_equal(cl_server_start(&cfg, &s, err, sizeof(err)), 0);
	addr.port = cl_server_tls_port(s);
	assert_true(addr.port != 0);

	/* The admin, checking that it talks to host1 (by name, then by IP). */
	snprintf(adm.peer_name, sizeof(adm.peer_name), "host1");
	assert_int_equal(cl_connect_tls(&addr, &adm, 5000, &x, err, sizeof(err)), 0);
	msg = call_status(x, err, sizeof(err), &error);
	assert_non_null(msg);
	assert_string_equal(msg, "hello admin");
	free(msg);
	snprintf(p, sizeof(p), "%s/ca1/admin/cert.pem", tmpdir);
	assert_int_equal(cl_pki_cert_serial(p, serial, sizeof(serial), err,
					    sizeof(err)), 0);
	assert_true(seen.tls);
	assert_string_equal(seen.name, "admin");
	assert_string_equal(seen.serial, serial);
	xport_close(x);
	snprintf(adm.peer_name, sizeof(adm.peer_name), "127.0.0.1");
	assert_int_equal(cl_connect_tls(&addr, &adm, 5000, &idle, err, sizeof(err)), 0);

	/* Another cluster's admin: refused, and the error says why. */
	assert_true(cl_connect_tls(&addr, &other, 5000, &x, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "not signed by"));
	/* Even when it trusts our CA: the server refuses its certificate. */
	memcpy(other.ca, adm.ca, sizeof(other.ca));
	assert_true(cl_connect_tls(&addr, &other, 5000, &x, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "not signed by the peer's CA"));

	/* A revoked certificate. */
	revoked_serial = serial;
	call_refused(&addr, &adm, -EACCES, "revoked");
	revoked_serial = NULL;

	/* Stop with an idle client connected. */
	cl_server_stop(s);
	assert_null(call_status(idle, err, sizeof(err), &error));
	xport_close(idle);
}

/* A TCP connection to the server that never starts its TLS handshake. */
static int mute_peer(const struct xport_addr *addr)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(addr->port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	assert_int_equal(inet_pton(AF_INET, addr->host, &sa.sin_addr), 1);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* How long an admin's connect and status call take, in ms; the call must succeed. */
static uint64_t admin_call_ms(const struct xport_addr *addr, struct xport_tls *adm)
{
	uint64_t t0 = now_ns();
	char err[512], *msg;
	struct xport *x;
	int error = 1;

	assert_int_equal(cl_connect_tls(addr, adm, 5000, &x, err, sizeof(err)), 0);
	msg = call_status(x, err, sizeof(err), &error);
	assert_non_null(msg);
	assert_int_equal(error, 0);
	free(msg);
	xport_close(x);
	return (now_ns() - t0) / 1000000;
}

struct later_close {
	int fd, after_ms;
};

static void *close_later(void *arg)
{
	struct later_close *lc = arg;

	usleep(lc->after_ms * 1000);
	close(lc->fd);
	return NULL;
}

/* A TLS server as host1, and the admin's credentials to reach it. */
static struct cl_server *tls_server_up(struct xport_addr *addr, struct xport_tls *srv,
				       struct xport_tls *adm)
{
	struct cl_server_cfg cfg = { .handler = handler, .tls_addr = addr, .tls = srv };
	struct cl_server *s;
	char err[512];

	tls_of(srv, "ca1/nodes/host1");
	tls_of(adm, "ca1/admin");
	snprintf(adm->peer_name, sizeof(adm->peer_name), "host1");
	assert_int_equal(cl_server_start(&cfg, &s, err, sizeof(err)), 0);
	addr->port = cl_server_tls_port(s);
	return s;
}

/*
 * Clients that connect and never handshake (a stalled peer, a port scanner)
 * do not hold the others back: each handshake has its own thread. Serial
 * handshakes would keep the admin waiting 10 s behind each mute peer.
 * With all 16 handshake slots taken the next client waits in the backlog
 * and is heard as soon as one frees.
 */
static void test_tls_stalled_handshakes(void **state)
{
	struct xport_addr addr = { .host = "127.0.0.1" };
	struct later_close lc = { .after_ms = 300 };
	struct xport_tls srv, adm;
	struct cl_server *s = tls_server_up(&addr, &srv, &adm);
	int mute[16];
	uint64_t ms;
	pthread_t th;


	for (int i = 0; i < 3; i++)
		mute[i] = mute_peer(&addr);
	usleep(100 * 1000);   /* the server has taken them into their handshakes */
	ms = admin_call_ms(&addr, &adm);
	print_message("admin heard with 3 mute peers ahead: %llu ms\n", (unsigned long long)ms);
	assert_true(ms < 2000);

	for (int i = 3; i < 16; i++)
		mute[i] = mute_peer(&addr);
	usleep(100 * 1000);
	lc.fd = mute[0];
	assert_int_equal(pthread_create(&th, NULL, close_later, &lc), 0);
	ms = admin_call_ms(&addr, &adm);
	pthread_join(th, NULL);
	print_message("admin heard with 16 mute peers ahead, one leaving after %d ms: %llu ms\n",
		      lc.after_ms, (unsigned long long)ms);
	assert_true(ms >= 250 && ms < 3000);

	/* Stop with handshakes in progress: they end at once. */
	for (int i = 1; i < 16; i++) {
		close(mute[i]);
		mute[i] = mute_peer(&addr);
	}
	usleep(100 * 1000);
	ms = now_ns() / 1000000;
	cl_server_stop(s);
	ms = now_ns() / 1000000 - ms;
	print_message("stop with 15 handshakes in progress: %llu ms\n", (unsigned long long)ms);
	assert_true(ms < 2000);
	for (int i = 1; i < 16; i++)
		close(mute[i]);
}

/* 256 TLS connections open: the next is told so in words, and one closing makes room. */
static void test_tls_too_many(void **state)
{
	struct xport_addr addr = { .host = "127.0.0.1" };
	enum { OPEN = 256 };
	struct xport_tls srv, adm;
	struct cl_server *s = tls_server_up(&addr, &srv, &adm);
	struct xport *open_x[OPEN];
	char err[512];

	for (int i = 0; i < OPEN; i++) {
		char *msg;
		int error = 1;

		/* Answered: admitted, before the next one comes. */
		assert_int_equal(cl_connect_tls(&addr, &adm, 5000, &open_x[i], err, sizeof(err)), 0);
		msg = call_status(open_x[i], err, sizeof(err), &error);
		assert_non_null(msg);
		assert_int_equal(error, 0);
		free(msg);
	}
	call_refused(&addr, &adm, -EBUSY, "too many connections (256 are open)");

	xport_close(open_x[0]);
	usleep(100 * 1000);   /* its thread has seen the close */
	assert_true(admin_call_ms(&addr, &adm) < 2000);
	cl_server_stop(s);
	for (int i = 1; i < OPEN; i++)
		xport_close(open_x[i]);
}

static int group_setup(void **state)
{
	char dir[128], err[256];

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/ferry-clnet-XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(dir, sizeof(dir), "%s/ca1", tmpdir);
	if (cl_pki_init(dir, "one", err, sizeof(err)) ||
	    cl_pki_issue_node(dir, "host1", "127.0.0.1", err, sizeof(err)))
		return -1;
	snprintf(dir, sizeof(dir), "%s/ca2", tmpdir);
	return cl_pki_init(dir, "two", err, sizeof(err)) ? -1 : 0;
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
		cmocka_unit_test(test_frame_round_trip),
		cmocka_unit_test(test_frame_bad),
		cmocka_unit_test(test_decode_good),
		cmocka_unit_test(test_decode_bad),
		cmocka_unit_test(test_decode_config_set),
		cmocka_unit_test(test_unix_server),
		cmocka_unit_test(test_tls_server),
		cmocka_unit_test(test_tls_stalled_handshakes),
		cmocka_unit_test(test_tls_too_many),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
