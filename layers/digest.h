/* SPDX-License-Identifier: Apache-2.0 */
/* digest.h: SHA-256 digests (OpenSSL EVP) in OCI's "sha256:<hex>" form. */
#ifndef KILN_DIGEST_H
#define KILN_DIGEST_H

#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"

/* "sha256:" + 64 hex digits + NUL */
#define KILN_DIGEST_LEN 72

struct kiln_sha256; /* opaque, wraps EVP_MD_CTX */

int kiln_sha256_new(struct kiln_sha256 **out, struct kiln_error **err);
void kiln_sha256_update(struct kiln_sha256 *h, const void *data, size_t len);
/* Write "sha256:<hex>" into out. The context may not be updated afterwards. */
void kiln_sha256_final(struct kiln_sha256 *h, char out[KILN_DIGEST_LEN]);
void kiln_sha256_free(struct kiln_sha256 *h);

/* Digest of a buffer. */
void kiln_digest_buffer(char out[KILN_DIGEST_LEN], const void *data, size_t len);
/* Digest of a file's bytes, streamed with a fixed buffer. */
int kiln_digest_file(char out[KILN_DIGEST_LEN], const char *path, struct kiln_error **err);
/* true when s is "sha256:" followed by exactly 64 lowercase hex digits. */
bool kiln_digest_valid(const char *s);
/* The hex part of a valid digest (pointer into s). */
const char *kiln_digest_hex(const char *s);

#endif
