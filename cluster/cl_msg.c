/* Heap-owned protobuf-c messages and their JSON form (see cl_msg.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cl_msg.h"
#include "core/json.h"

ProtobufCMessage *cl_msg_dup(const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = malloc(len ? len : 1);
	ProtobufCMessage *copy;

	if (!buf)
		return NULL;
	protobuf_c_message_pack(m, buf);
	copy = protobuf_c_message_unpack(m->descriptor, NULL, len, buf);
	free(buf);
	return copy;
}

void cl_msg_free(ProtobufCMessage *m)
{
	if (m)
		protobuf_c_message_free_unpacked(m, NULL);
}

char *cl_strdup(const char *s)
{
	if (!s || !*s)
		return (char *)protobuf_c_empty_string;
	return strdup(s);
}

void cl_str_set(char **field, const char *s)
{
	char *n = cl_strdup(s);

	if (!n)
		return;   /* keep the old value rather than lose the field */
	if (*field && *field != protobuf_c_empty_string)
		free(*field);
	*field = n;
}

int cl_strv_add(char ***field, size_t *n_field, const char *s)
{
	char **v = realloc(*field, (*n_field + 1) * sizeof(*v));
	char *d;

	if (!v)
		return -ENOMEM;
	*field = v;
	d = strdup(s);
	if (!d)
		return -ENOMEM;
	v[(*n_field)++] = d;
	return 0;
}

static void json_field(struct json *j, const char *key,
		       const ProtobufCFieldDescriptor *fd, const void *p);

static void json_message(struct json *j, const char *key, const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;

	json_obj_begin(j, key);
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *fd = &d->fields[i];
		const char *base = (const char *)m;

		if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)(base + fd->quantifier_offset);
			const char *arr = *(const char *const *)(base + fd->offset);
			size_t sz;

			switch (fd->type) {
			case PROTOBUF_C_TYPE_STRING:
			case PROTOBUF_C_TYPE_MESSAGE: sz = sizeof(void *); break;
			case PROTOBUF_C_TYPE_BOOL: sz = sizeof(protobuf_c_boolean); break;
			case PROTOBUF_C_TYPE_DOUBLE: case PROTOBUF_C_TYPE_INT64:
			case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_SINT64:
			case PROTOBUF_C_TYPE_FIXED64: case PROTOBUF_C_TYPE_SFIXED64:
				sz = 8; break;
			case PROTOBUF_C_TYPE_BYTES: sz = sizeof(ProtobufCBinaryData); break;
			default: sz = 4; break;
			}
			json_arr_begin(j, fd->name);
			for (size_t k = 0; k < n; k++)
				json_field(j, NULL, fd, arr + k * sz);
			json_arr_end(j);
			continue;
		}
		if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
			uint32_t which = *(const uint32_t *)(base + fd->quantifier_offset);

			if (which != fd->id)
				continue;
		}
		if (fd->type == PROTOBUF_C_TYPE_MESSAGE &&
		    !*(const void *const *)(base + fd->offset))
			continue;
		json_field(j, fd->name, fd, base + fd->offset);
	}
	json_obj_end(j);
}

static void json_field(struct json *j, const char *key,
		       const ProtobufCFieldDescriptor *fd, const void *p)
{
	switch (fd->type) {
	case PROTOBUF_C_TYPE_STRING:
		json_str(j, key, *(const char *const *)p ? *(const char *const *)p : "");
		break;
	case PROTOBUF_C_TYPE_MESSAGE:
		if (*(const void *const *)p)
			json_message(j, key, *(const ProtobufCMessage *const *)p);
		break;
	case PROTOBUF_C_TYPE_BOOL:
		json_bool(j, key, *(const protobuf_c_boolean *)p);
		break;
	case PROTOBUF_C_TYPE_DOUBLE:
		json_double(j, key, *(const double *)p);
		break;
	case PROTOBUF_C_TYPE_FLOAT:
		json_double(j, key, *(const float *)p);
		break;
	case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64:
		json_u64(j, key, *(const uint64_t *)p);
		break;
	case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		json_i64(j, key, *(const int64_t *)p);
		break;
	case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32:
		json_u64(j, key, *(const uint32_t *)p);
		break;
	case PROTOBUF_C_TYPE_ENUM: {
		const ProtobufCEnumDescriptor *ed = fd->descriptor;
		const ProtobufCEnumValue *v =
			protobuf_c_enum_descriptor_get_value(ed, *(const int *)p);

		if (v)
			json_str(j, key, v->name);
		else
			json_i64(j, key, *(const int *)p);
		break;
	}
	case PROTOBUF_C_TYPE_BYTES:
		json_u64(j, key, ((const ProtobufCBinaryData *)p)->len);
		break;
	default:
		json_i64(j, key, *(const int32_t *)p);
		break;
	}
}

void cl_msg_json(FILE *f, const ProtobufCMessage *m)
{
	struct json j;

	json_init(&j, f);
	json_message(&j, NULL, m);
	json_end(&j);
}
