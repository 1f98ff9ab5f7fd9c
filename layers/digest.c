/* SPDX-License-Identifier: Apache-2.0 */
/* digest.c: SHA-256 digests of buffers, streams and files with OpenSSL's EVP interface. */
#include "layers/digest.h"
#include "common/cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DIGEST_CHUNK (1024 * 1024)

struct kiln_sha256 {
	EVP_MD_CTX *ctx;
};

/* Write "sha256:" and the lowercase hex form of the 32 bytes MD into out. */
static void format_digest(char out[KILN_DIGEST_LEN], const unsigned char *md)
{
	static const char hex[] = "0123456789abcdef";
	memcpy(out, "sha256:", 7);
	for (size_t i = 0; i < 32; i++) {
		out[7 + 2 * i] = hex[md[i] >> 4];
		out[7 + 2 * i + 1] = hex[md[i] & 0xf];
	}
	out[KILN_DIGEST_LEN - 1] = '\0';
}

/* The first queued OpenSSL error as text (the queue is cleared), for error messages. */
static const char *openssl_error(void)
{
	static __thread char buf[256];
	unsigned long e = ERR_get_error();
	ERR_clear_error();
	if (e == 0)
		return "unknown OpenSSL error";
	ERR_error_string_n(e, buf, sizeof(buf));
	return buf;
}

int kiln_sha256_new(struct kiln_sha256 **out, struct kiln_error **err)
{
	struct kiln_sha256 *h = calloc(1, sizeof(*h));
	if (h == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	h->ctx = EVP_MD_CTX_new();
	if (h->ctx == NULL || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
		kiln_sha256_free(h);
		return kiln_error_set(err, KILN_EFAIL, "cannot start a SHA-256 digest: %s", openssl_error());
	}
	*out = h;
	return 0;
}

/*
 * Add LEN bytes to the digest. EVP_DigestUpdate of a software SHA-256 cannot fail once the context is
 * initialized, so there is nothing to report.
 */
void kiln_sha256_update(struct kiln_sha256 *h, const void *data, size_t len)
{
	if (len > 0)
		EVP_DigestUpdate(h->ctx, data, len);
}

void kiln_sha256_final(struct kiln_sha256 *h, char out[KILN_DIGEST_LEN])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	if (EVP_DigestFinal_ex(h->ctx, md, &mdlen) != 1 || mdlen != 32)
		memset(md, 0, sizeof(md));
	format_digest(out, md);
}

void kiln_sha256_free(struct kiln_sha256 *h)
{
	if (h == NULL)
		return;
	EVP_MD_CTX_free(h->ctx);
	free(h);
}

void kiln_digest_buffer(char out[KILN_DIGEST_LEN], const void *data, size_t len)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
		memset(md, 0, sizeof(md));
	format_digest(out, md);
}

/*
 * Digest the bytes of the file at PATH, read sequentially through a 1 MiB buffer. Fails with the
 * errno-derived code (KILN_ENOTFOUND for a missing file) and a message naming the file.
 */
int kiln_digest_file(char out[KILN_DIGEST_LEN], const char *path, struct kiln_error **err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return kiln_error_errno(err, errno, "cannot open '%s'", path);
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	_cleanup_free_ unsigned char *buf = malloc(DIGEST_CHUNK);
	if (buf == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	struct kiln_sha256 *h = NULL;
	if (kiln_sha256_new(&h, err) < 0)
		return kiln_error_wrap(err, "cannot digest '%s'", path);
	for (;;) {
		ssize_t n = read(fd, buf, DIGEST_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			kiln_sha256_free(h);
			return kiln_error_errno(err, e, "cannot read '%s'", path);
		}
		if (n == 0)
			break;
		kiln_sha256_update(h, buf, (size_t)n);
	}
	kiln_sha256_final(h, out);
	kiln_sha256_free(h);
	return 0;
}

bool kiln_digest_valid(const char *s)
{
	if (s == NULL || strncmp(s, "sha256:", 7) != 0)
		return false;
	s += 7;
	size_t i = 0;
	for (; s[i]; i++) {
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	}
	return i == 64;
}

const char *kiln_digest_hex(const char *s)
{
	return strncmp(s, "sha256:", 7) == 0 ? s + 7 : s;
}
