/* SPDX-License-Identifier: Apache-2.0 */
/*
 * files.h: private to shim/files*.c. What the file inputs' and outputs' handling (files.c) shares with the
 * http(s) downloads and uploads (files_http.c) and the data: URIs (files_data.c).
 */
#ifndef KILN_SHIM_FILES_H
#define KILN_SHIM_FILES_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "common/error.h"

/* ---- files.c: the size limit, percent-escapes, MIME types ---- */

/* $KILN_MAX_INPUT_BYTES, else (also when it is not a positive number) 1 GiB. */
long long files_max_input_bytes(void);
/* The byte at S[*i], decoding a %XX escape (and moving *i past it). */
char files_next_byte(const char *s, size_t len, size_t *i);
/* The MIME type for PATH's extension (any case), application/octet-stream when unknown. */
const char *files_mime_for_path(const char *path);

/* ---- files_http.c: downloads and uploads with libcurl ---- */

/* Whether SA is an address file inputs may not be fetched from: loopback, private (RFC 1918, fc00::/7),
 * link-local, 0.0.0.0/8, shared (100.64/10), multicast and reserved, also as IPv4-mapped IPv6. */
bool files_private_address(const struct sockaddr *sa);
/* Whether KILN_ALLOW_PRIVATE_URLS=1 allows them. */
bool files_private_urls_allowed(void);
/* Download the http(s) URL into FD (PATH, for messages); the input is NAME. */
int files_download(int fd, const char *path, const char *url, const char *name, struct kiln_error **err);
/*
 * PUT the file PATH to UPLOAD_URL/<basename> (streamed, with its Content-Type); *out gets the URL the
 * answer gave in Location (resolved), else the PUT URL. Non-2xx answers fail with the status.
 */
int files_upload(char **out, const char *path, const char *upload_url, struct kiln_error **err);

/* ---- files_data.c: data: URIs ---- */

/*
 * Decode the payload S[0..LEN) of a data: URI into FD: base64 (percent-escapes and whitespace allowed,
 * padding optional) when BASE64, else percent-encoded bytes. Streams through a fixed buffer.
 */
int files_decode_data(int fd, const char *path, const char *s, size_t len, bool base64, const char *name,
                      struct kiln_error **err);
/* A data: URI with PATH's contents, base64-encoded, into *out (caller frees). */
int files_encode_data_uri(char **out, const char *path, struct kiln_error **err);

#endif
