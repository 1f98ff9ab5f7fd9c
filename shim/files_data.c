/* SPDX-License-Identifier: Apache-2.0 */
/* files_data.c: data: URIs, decoded into file inputs and encoded from file outputs (base64 by OpenSSL). */
#include <ctype.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "shim/files.h"

#define B64_CHUNK (4 * 16384) /* base64 characters decoded at a time */
#define RAW_CHUNK (3 * 16384) /* bytes encoded at a time */

/* ---- decoding (inputs) ---- */

/* Write LEN bytes to FD, counting them in *written against MAX. */
static int put_decoded(int fd, const void *data, size_t len, long long *written, long long max,
                       const char *path, const char *name, struct kiln_error **err)
{
	if (*written + (long long)len > max)
		return kiln_error_set(err, KILN_EINVAL,
		                      "input '%s': data: URI larger than %lld bytes (KILN_MAX_INPUT_BYTES)",
		                      name, max);
	if (kiln_write_all(fd, data, len) < 0)
		return kiln_error_errno(err, errno, "input '%s': cannot write '%s'", name, path);
	*written += (long long)len;
	return 0;
}

/* Write the chunk IN[0..N): as it is, or base64-decoded through OUT less PAD bytes of padding. */
static int flush_chunk(int fd, const unsigned char *in, size_t n, unsigned char *out, bool base64, size_t pad,
                       long long *written, long long max, const char *path, const char *name,
                       struct kiln_error **err)
{
	if (!base64)
		return put_decoded(fd, in, n, written, max, path, name, err);
	if (n == 0)
		return 0;
	int m = EVP_DecodeBlock(out, in, (int)n);
	if (m < 0 || (size_t)m < pad)
		return kiln_error_set(err, KILN_EINVAL, "input '%s': invalid base64 in data: URI", name);
	return put_decoded(fd, out, (size_t)m - pad, written, max, path, name, err);
}

int files_decode_data(int fd, const char *path, const char *s, size_t len, bool base64, const char *name,
                      struct kiln_error **err)
{
	long long max = files_max_input_bytes(), written = 0;
	_cleanup_free_ unsigned char *in = malloc(B64_CHUNK + 4);
	_cleanup_free_ unsigned char *out = malloc(B64_CHUNK / 4 * 3 + 3);
	if (!in || !out)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	size_t n = 0;
	int pad = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)files_next_byte(s, len, &i);
		if (!base64) {
			in[n++] = c;
		} else if (isspace(c)) {
			continue;
		} else if (c == '=' || pad > 0) {
			if (c != '=' || ++pad > 2)
				return kiln_error_set(err, KILN_EINVAL,
				                      "input '%s': invalid base64 in data: URI", name);
			continue;
		} else if (isalnum(c) || c == '+' || c == '/') {
			in[n++] = c;
		} else {
			return kiln_error_set(err, KILN_EINVAL, "input '%s': invalid base64 in data: URI",
			                      name);
		}
		if (n < B64_CHUNK)
			continue;
		int rc = flush_chunk(fd, in, n, out, base64, 0, &written, max, path, name, err);
		if (rc < 0)
			return rc;
		n = 0;
	}
	if (!base64)
		return put_decoded(fd, in, n, &written, max, path, name, err);
	if (n % 4 == 1)
		return kiln_error_set(err, KILN_EINVAL, "input '%s': invalid base64 in data: URI", name);
	size_t missing = n % 4 ? 4 - n % 4 : 0;
	for (size_t k = 0; k < missing; k++)
		in[n++] = '=';
	return flush_chunk(fd, in, n, out, true, missing, &written, max, path, name, err);
}
/* ---- encoding (outputs) ---- */

int files_encode_data_uri(char **out, int fd, const char *path, long long limit, struct kiln_error **err)
{
	_cleanup_buf_ struct kiln_buf b = KILN_BUF_INIT;
	_cleanup_free_ unsigned char *raw = malloc(RAW_CHUNK);
	if (!raw || kiln_buf_printf(&b, "data:%s;base64,", files_mime_for_path(path)) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	long long left = limit;
	while (limit < 0 || left > 0) {
		/* a whole chunk (a multiple of 3 bytes) before encoding: no padding inside the URI */
		size_t want = limit < 0 || left > RAW_CHUNK ? RAW_CHUNK : (size_t)left, n = 0;
		while (n < want) {
			ssize_t r = read(fd, raw + n, want - n);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				return kiln_error_errno(err, errno, "cannot read '%s'", path);
			if (r == 0)
				break;
			n += (size_t)r;
		}
		if (n > 0) {
			if (kiln_buf_grow(&b, (n + 2) / 3 * 4 + 1) < 0)
				return kiln_error_set(err, KILN_EFAIL, "out of memory");
			int m = EVP_EncodeBlock((unsigned char *)b.ptr + b.len, raw, (int)n);
			b.len += (size_t)m;
		}
		left -= (long long)n;
		if (n < want)
			break;
	}
	*out = kiln_buf_detach(&b);
	return 0;
}
