/* SPDX-License-Identifier: Apache-2.0 */
/*
 * reference.h: image references ("registry/repository:tag@digest"), normalized as Docker does:
 * "hello" is "docker.io/library/hello:latest".
 */
#ifndef KILN_REFERENCE_H
#define KILN_REFERENCE_H

#include <stdbool.h>

#include "common/error.h"

struct kiln_reference {
	char *registry;      /* "docker.io", "localhost:5000", "ghcr.io" */
	char *repository;    /* "library/hello", "org/model" */
	char *tag;           /* "latest" when neither tag nor digest was given; NULL with a digest alone */
	char *digest;        /* "sha256:..." or NULL */
	bool named_registry; /* S named the registry ("localhost:5000/m"), not left it to the default */
};

/* Parse and normalize S. Errors (KILN_EINVAL) quote S and say what is wrong with it. */
int kiln_reference_parse(struct kiln_reference **out, const char *s, struct kiln_error **err);

/* The full form: "docker.io/library/hello:latest" (and "@digest" when there is one). Caller frees. */
char *kiln_reference_string(const struct kiln_reference *r);

/* The short form people type: "hello:latest", "localhost:5000/m:v1"; Docker Hub's name stays where the
 * repository would otherwise be read as naming a registry ("docker.io/a.b/c:1"). Caller frees. */
char *kiln_reference_familiar(const struct kiln_reference *r);

void kiln_reference_free(struct kiln_reference *r);

#endif
