/*
 * Conventions for the cluster's protobuf-c messages (cluster.proto).
 *
 * Every message the cluster code keeps or hands on is fully heap-owned:
 * strings by strdup, repeated fields and sub-messages by malloc. That way
 * one call, protobuf_c_message_free_unpacked(), frees any of them, whether
 * it came off the wire or was built by hand. cl_msg_dup() is a deep copy
 * (pack and unpack), which is all the cluster ever needs: its messages are
 * small and copied rarely.
 */
#ifndef FERRY_CL_MSG_H
#define FERRY_CL_MSG_H

#include <stddef.h>

#include "cluster.pb-c.h"

/* A deep copy; NULL on allocation failure. */
ProtobufCMessage *cl_msg_dup(const ProtobufCMessage *m);
#define CL_DUP(type, m) ((type *)cl_msg_dup(&(m)->base))
/* Free a heap-owned message (NULL is fine). */
void cl_msg_free(ProtobufCMessage *m);
#define CL_FREE(m) cl_msg_free((m) ? &(m)->base : NULL)

/* strdup that keeps "" as protobuf-c's shared empty string (never freed). */
char *cl_strdup(const char *s);
/* Replace a heap-owned string field. */
void cl_str_set(char **field, const char *s);
/* Append to a repeated string field (n_field counts). 0 or -ENOMEM. */
int cl_strv_add(char ***field, size_t *n_field, const char *s);

/* Allocate and init a message of the given type (NULL on ENOMEM). */
#define CL_NEW(type, init) ({                                  \
	type *_m = malloc(sizeof(type));                       \
	if (_m)                                                \
		init(_m);                                      \
	_m; })

/*
 * Print any message as one JSON object, field names as in cluster.proto,
 * enums by name, unset sub-messages left out: what `-o json` prints.
 */
#include <stdio.h>
void cl_msg_json(FILE *f, const ProtobufCMessage *m);

#endif
