/* SPDX-License-Identifier: Apache-2.0 */
/*
 * client.h: the OCI distribution-spec 1.1 client (libcurl): one registry host, its credentials and its
 * tokens, blobs and manifests. Thread-safe: several blobs may be uploaded at once through one client.
 */
#ifndef KILN_REGISTRY_CLIENT_H
#define KILN_REGISTRY_CLIENT_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/error.h"
#include "layers/digest.h"
#include "layers/recipe.h"

struct kiln_registry_options {
	const char *ca_file;         /* --ca-file; else SSL_CERT_FILE; else the system's CAs */
	const char *const *insecure; /* NULL-terminated hosts allowed over plain HTTP besides localhost and
	                                127.0.0.0/8 (also from KILN_INSECURE_REGISTRIES, comma-separated) */
	int max_retries;             /* attempts after the first on retryable failures (default 5) */
	double backoff;              /* first backoff in seconds (default 0.5), doubled each time, jittered */
	uint64_t chunk_size;         /* PATCH chunk size for large blobs (default 64 MiB) */
	uint64_t monolithic_max;     /* blobs up to this size go in one PUT (default 16 MiB) */
	volatile sig_atomic_t *cancel; /* stop with KILN_EINTR when set */
	const char *username;          /* credentials to use instead of looking them up (kiln login) */
	const char *password;
};

/* Fill in the defaults above. */
void kiln_registry_options_init(struct kiln_registry_options *opt);

struct kiln_registry;

/*
 * A client for HOST ("localhost:5000", "ghcr.io", "docker.io" — Docker Hub's API host is used for the
 * latter). Credentials are looked up once (KILN_REGISTRY_USERNAME/KILN_REGISTRY_PASSWORD, then
 * REGISTRY_AUTH_FILE, then $DOCKER_CONFIG/config.json or ~/.docker/config.json with auths, credHelpers
 * and credsStore). Plain HTTP is used only for localhost, 127.0.0.0/8 and insecure registries.
 */
int kiln_registry_open(struct kiln_registry **out, const char *host, const struct kiln_registry_options *opt,
                       struct kiln_error **err);
void kiln_registry_free(struct kiln_registry *r);

/* GET /v2/, authenticating if asked: checks that the registry answers and accepts the credentials. */
int kiln_registry_ping(struct kiln_registry *r, struct kiln_error **err);

/* HEAD a blob: *exists, and its size when it does. */
int kiln_registry_blob_exists(struct kiln_registry *r, const char *repo, const char *digest, bool *exists,
                              struct kiln_error **err);

/* Cross-repository mount from FROM_REPO of the same registry; *mounted false when the registry started an
 * upload instead (that upload is cancelled). */
int kiln_registry_blob_mount(struct kiln_registry *r, const char *repo, const char *from_repo,
                             const char *digest, bool *mounted, struct kiln_error **err);

/* Where an upload's bytes come from: a blob that can be read from any offset. */
struct kiln_blob_source {
	char digest[KILN_DIGEST_LEN];
	uint64_t size;
	/* (Re)start reading at OFFSET. */
	int (*seek)(void *ctx, uint64_t offset, struct kiln_error **err);
	/* Read up to LEN bytes; the count (0 at the end), or a negative KILN_E* code with *err set. */
	ssize_t (*read)(void *ctx, void *buf, size_t len, struct kiln_error **err);
	void *ctx;
};

/*
 * Upload a blob: one PUT for small blobs and for registries that reject chunked uploads (ghcr.io,
 * *.pkg.dev, gcr.io, *.gcr.io, ECR's *.amazonaws.com), else PATCH chunks; after a failure the upload resumes
 * from the offset the registry reports (GET on the upload's Location, Range header). PROGRESS gets the
 * bytes sent so far. *sent: bytes sent in all (retries included).
 */
int kiln_registry_blob_upload(struct kiln_registry *r, const char *repo, const struct kiln_blob_source *src,
                              void (*progress)(void *ctx, uint64_t done), void *progress_ctx, uint64_t *sent,
                              struct kiln_error **err);

/* Download a blob to WRITE, verifying its digest (KILN_EIO when it does not match; WRITE has then seen
 * bytes the caller must discard). */
int kiln_registry_blob_get(struct kiln_registry *r, const char *repo, const char *digest, kiln_write_fn write,
                           void *ctx, struct kiln_error **err);

/* A blob larger than this is fetched in parts of this size (KILN_FETCH_PART_SIZE overrides), this many at
 * once (KILN_FETCH_PARALLEL). */
#define KILN_FETCH_PART_SIZE_DEFAULT (32ULL << 20)
#define KILN_FETCH_PARALLEL_DEFAULT  4
#define KILN_FETCH_PARALLEL_MAX      64

/*
 * Download the blob DIGEST of SIZE bytes into the file FD (empty, at offset 0): a blob larger than a part
 * as ranged GETs of its parts, several at once, each written at its place, each resumed and retried on
 * its own (kiln_registry_blob_get's faults), its digest following the bytes written without a gap
 * (read back from the page cache by whichever writer is free) and checked at the end; a
 * registry that gives no ranges gets one GET of the whole. PROGRESS (may be NULL; called from several
 * threads) gets the bytes written so far. KILN_EIO when the digest does not match (FD then holds bytes
 * the caller must discard); KILN_EINVAL when KILN_FETCH_PART_SIZE or KILN_FETCH_PARALLEL is set to
 * something other than a whole number from 1 (to KILN_FETCH_PARALLEL_MAX).
 */
int kiln_registry_blob_fetch(struct kiln_registry *r, const char *repo, const char *digest, uint64_t size,
                             int fd, void (*progress)(void *ctx, uint64_t done), void *progress_ctx,
                             struct kiln_error **err);

/* The environment variable NAME into *OUT: unset or empty, DEF; else a whole number from 1 to MAX (any
 * other value is a KILN_EINVAL error naming the variable). */
int kiln_env_count(const char *name, uint64_t def, uint64_t max, uint64_t *out, struct kiln_error **err);

/* PUT a manifest by tag or digest with its media type as Content-Type; its digest goes to digest_out. */
int kiln_registry_manifest_put(struct kiln_registry *r, const char *repo, const char *reference,
                               const char *media_type, const char *data, size_t len,
                               char digest_out[KILN_DIGEST_LEN], struct kiln_error **err);

/*
 * GET a manifest or index by tag or digest, accepting OCI and Docker v2 manifests and indexes. The body
 * (at most 4 MiB: larger is an error), its media type and digest (verified when REFERENCE is a digest).
 */
int kiln_registry_manifest_get(struct kiln_registry *r, const char *repo, const char *reference, char **data,
                               size_t *len, char **media_type, char digest_out[KILN_DIGEST_LEN],
                               struct kiln_error **err);

/*
 * Check a manifest HOST sent: BODY (LEN bytes) must be a JSON object. Its media type goes to *MEDIA_TYPE
 * (caller frees): CONTENT_TYPE's (may be NULL) less its parameters, else, when that is missing, JSON or
 * text, the body's "mediaType", else an OCI image manifest's. KILN_EINVAL naming HOST otherwise.
 */
int kiln_registry_manifest_check(char **media_type, const char *host, const char *content_type,
                                 const char *body, size_t len, struct kiln_error **err);

#endif
