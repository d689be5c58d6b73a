/*
 * The stream's order rules (docs/migration-stream.md, "Order"): through the
 * reader, records out of place are refused with "X before Y" / "X after Y"
 * and the offset; and the state machine alone, as the verifier uses it.
 */
#include "stream_test.h"

static void test_pages_before_vm_config(void **state)
{
	int fd = mkfd();

	WRITE_TYPES(fd, STREAM_REC_STREAM_HEADER, STREAM_REC_PAGE_DATA,
		    STREAM_REC_VM_CONFIG, STREAM_REC_CPU_MODEL, TAIL);
	expect_error(fd, -EPROTO, "stream: PAGE_DATA before VM_CONFIG at offset 40");
	close(fd);
	fd = mkfd();
	WRITE_TYPES(fd, STREAM_REC_STREAM_HEADER, STREAM_REC_VM_CONFIG,
		    STREAM_REC_PAGE_DATA, STREAM_REC_CPU_MODEL, TAIL);
	expect_error(fd, -EPROTO, "stream: PAGE_DATA before CPU_MODEL at offset 64");
	close(fd);
}

static void test_vcpu_before_cpu_model(void **state)
{
	int fd = mkfd();

	WRITE_TYPES(fd, STREAM_REC_STREAM_HEADER, STREAM_REC_VM_CONFIG,
		    STREAM_REC_VCPU_STATE, STREAM_REC_CPU_MODEL,
		    STREAM_REC_CLOCK, STREAM_REC_END);
	/* the spec's own example, to the byte */
	expect_error(fd, -EPROTO, "stream: VCPU_STATE before CPU_MODEL at offset 64");
	close(fd);
}

static void test_record_after_end(void **state)
{
	int fd = mkfd();

	WRITE_TYPES(fd, HEAD, TAIL, STREAM_REC_PAGE_DATA);
	expect_error(fd, -EPROTO, "stream: PAGE_DATA after END at offset 160");
	close(fd);
	fd = mkfd();
	WRITE_TYPES(fd, HEAD, TAIL, STREAM_REC_END);
	expect_error(fd, -EPROTO, "stream: second END at offset 160");
	close(fd);
}

static void test_first_and_once(void **state)
{
	int fd = mkfd();

	WRITE_TYPES(fd, STREAM_REC_VM_CONFIG, HEAD, TAIL);
	expect_error(fd, -EPROTO, "stream: VM_CONFIG before STREAM_HEADER at offset 16");
	close(fd);
	fd = mkfd();
	WRITE_TYPES(fd, STREAM_REC_STREAM_HEADER, HEAD, TAIL);
	expect_error(fd, -EPROTO, "stream: second STREAM_HEADER at offset 40");
	close(fd);
	fd = mkfd();
	WRITE_TYPES(fd, HEAD, STREAM_REC_VCPU_STATE, STREAM_REC_CLOCK,
		    STREAM_REC_CLOCK, STREAM_REC_END);
	expect_error(fd, -EPROTO, "stream: second CLOCK at offset 136");
	close(fd);
}

static void test_late_records(void **state)
{
	int fd = mkfd();

	WRITE_TYPES(fd, HEAD, STREAM_REC_PAGE_DATA, STREAM_REC_VM_CONFIG, TAIL);
	expect_error(fd, -EPROTO, "stream: VM_CONFIG after PAGE_DATA at offset 136");
	close(fd);
	fd = mkfd();
	WRITE_TYPES(fd, HEAD, STREAM_REC_VCPU_STATE, STREAM_REC_PAGE_DATA,
		    STREAM_REC_CLOCK, STREAM_REC_END);
	expect_error(fd, -EPROTO, "stream: PAGE_DATA after VCPU_STATE at offset 112");
	close(fd);
	fd = mkfd();
	WRITE_TYPES(fd, HEAD, STREAM_REC_VCPU_STATE, STREAM_REC_END);
	expect_error(fd, -EPROTO, "stream: END before CLOCK at offset 112");
	close(fd);
	fd = mkfd();
	WRITE_TYPES(fd, HEAD, STREAM_REC_CLOCK, STREAM_REC_END);
	expect_error(fd, -EPROTO, "stream: CLOCK before VCPU_STATE at offset 88");
	close(fd);
	fd = mkfd();
	WRITE_TYPES(fd, HEAD, STREAM_REC_VCPU_STATE, STREAM_REC_DEVICE_STATE,
		    STREAM_REC_CLOCK, STREAM_REC_END);
	expect_error(fd, -EPROTO, "stream: DEVICE_STATE before CLOCK at offset 112");
	close(fd);
	fd = mkfd();
	WRITE_TYPES(fd, HEAD, STREAM_REC_VCPU_STATE, STREAM_REC_CLOCK,
		    STREAM_REC_DEVICE_STATE, STREAM_REC_VCPU_STATE, STREAM_REC_END);
	expect_error(fd, -EPROTO, "stream: VCPU_STATE after DEVICE_STATE at offset 160");
	close(fd);
}

static void test_protocol_message_in_stream(void **state)
{
	int fd = mkfd();

	WRITE_TYPES(fd, HEAD, STREAM_REC_HELLO, TAIL);
	expect_error(fd, -EPROTO, "stream: HELLO at offset 88: a live protocol message");
	close(fd);
}

/* The state machine alone, as the verifier uses it. */
static void test_order_machine(void **state)
{
	static const uint32_t minimal[] = {
		STREAM_REC_STREAM_HEADER, STREAM_REC_VM_CONFIG,
		STREAM_REC_CPU_MODEL, STREAM_REC_VCPU_STATE, STREAM_REC_CLOCK,
		STREAM_REC_END,
	};
	static const uint32_t busy[] = {
		STREAM_REC_STREAM_HEADER, STREAM_REC_VM_CONFIG,
		STREAM_REC_CPU_MODEL, STREAM_REC_ROUND, STREAM_REC_PAGE_DATA,
		STREAM_REC_PAGE_DATA, STREAM_REC_OPTIONAL | 9, STREAM_REC_ROUND,
		STREAM_REC_PAGE_DATA, STREAM_REC_SYNC, STREAM_REC_VCPU_STATE,
		STREAM_REC_VCPU_STATE, STREAM_REC_CLOCK,
		STREAM_REC_DEVICE_STATE, STREAM_REC_DEVICE_STATE,
		STREAM_REC_END,
	};
	struct stream_order o;
	char err[STREAM_ERR_LEN];

	stream_order_init(&o);
	for (unsigned i = 0; i < sizeof(minimal) / sizeof(minimal[0]); i++)
		assert_int_equal(stream_order_check(&o, minimal[i], i, err, sizeof(err)), 0);
	assert_int_equal(o.phase, STREAM_PH_END);
	assert_int_equal(stream_order_check(&o, STREAM_REC_CLOCK, 99, NULL, 0), -EPROTO);

	stream_order_init(&o);
	for (unsigned i = 0; i < sizeof(busy) / sizeof(busy[0]); i++)
		assert_int_equal(stream_order_check(&o, busy[i], i, err, sizeof(err)), 0);
	assert_int_equal(o.phase, STREAM_PH_END);

	/* a second CPU_MODEL among the pages */
	stream_order_init(&o);
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(stream_order_check(&o, busy[i], i, err, sizeof(err)), 0);
	assert_int_equal(stream_order_check(&o, STREAM_REC_CPU_MODEL, 7, err, sizeof(err)),
			 -EPROTO);
	assert_string_equal(err, "stream: CPU_MODEL after ROUND at offset 7");

	/* SYNC ends the pre-copy: never among the state */
	stream_order_init(&o);
	for (unsigned i = 0; i < 11; i++)
		assert_int_equal(stream_order_check(&o, busy[i], i, err, sizeof(err)), 0);
	assert_int_equal(busy[10], STREAM_REC_VCPU_STATE);
	assert_int_equal(stream_order_check(&o, STREAM_REC_SYNC, 11, err, sizeof(err)),
			 -EPROTO);
	assert_string_equal(err, "stream: SYNC after VCPU_STATE at offset 11");
	/* and its answer is no record of a stream */
	assert_int_equal(stream_order_check(&o, STREAM_REC_SYNCED, 12, err, sizeof(err)),
			 -EPROTO);

	assert_string_equal(stream_type_name(STREAM_REC_ROUND), "ROUND");
	assert_string_equal(stream_type_name(STREAM_REC_SYNCED), "SYNCED");
	assert_null(stream_type_name(0x42));
	assert_int_equal(stream_type_max_len(STREAM_REC_PAGE_DATA), 2101264);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pages_before_vm_config),
		cmocka_unit_test(test_vcpu_before_cpu_model),
		cmocka_unit_test(test_record_after_end),
		cmocka_unit_test(test_first_and_once),
		cmocka_unit_test(test_late_records),
		cmocka_unit_test(test_protocol_message_in_stream),
		cmocka_unit_test(test_order_machine),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
