/* SPDX-License-Identifier: Apache-2.0 */
/*
 * push.h: pushing an image from the store to a registry, sending only what the registry lacks: HEAD
 * first, then a cross-repository mount, then an upload from the store (weights streamed from their
 * source files) or a registry-to-registry copy for blobs the store only knows the location of.
 */
#ifndef KILN_PUSH_H
#define KILN_PUSH_H

#include <signal.h>
#include <stdint.h>

#include "common/error.h"
#include "pkg/store.h"
#include "registry/client.h"

enum kiln_blob_action {
	KILN_BLOB_UPLOADED,
	KILN_BLOB_EXISTS,
	KILN_BLOB_MOUNTED,
	KILN_BLOB_COPIED,
};

/* "uploaded", "exists", "mounted", "copied" */
const char *kiln_blob_action_name(enum kiln_blob_action a);

struct kiln_pushed_blob {
	char digest[KILN_DIGEST_LEN];
	uint64_t size;
	const char *what; /* "layer" or "config" */
	enum kiln_blob_action action;
	uint64_t bytes_sent;
	char *from; /* mounted or copied from "registry/repository" */
};

struct kiln_push_result {
	char *reference; /* full form of the target */
	char *familiar;
	char manifest_digest[KILN_DIGEST_LEN];
	struct kiln_pushed_blob *blobs; /* layers in manifest order, then the config */
	size_t n;
	uint64_t bytes_sent; /* blobs and manifest */
	double seconds;
};

struct kiln_push_options {
	const char *image;  /* the image in the store (a reference) */
	const char *target; /* where to push it (a reference; NULL: the same as image) */
	int jobs;           /* blobs at once (default 4) */
	const struct kiln_registry_options *registry;
	void (*on_blob)(void *ctx, const struct kiln_pushed_blob *b); /* from worker threads */
	void (*on_bytes)(void *ctx, uint64_t sent, uint64_t total);   /* from worker threads */
	/* one blob's upload: SENT of its SIZE bytes (from worker threads) */
	void (*on_blob_bytes)(void *ctx, const struct kiln_pushed_blob *b, uint64_t sent);
	void *ctx;
	volatile sig_atomic_t *cancel;
};

int kiln_push(struct kiln_push_result **out, struct kiln_store *s, const struct kiln_push_options *opt,
              struct kiln_error **err);
void kiln_push_result_free(struct kiln_push_result *r);

#endif
