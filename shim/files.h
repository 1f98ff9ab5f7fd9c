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
#include <sys/stat.h>

#include "common/error.h"

/* ---- files.c: the size limit, percent-escapes, MIME types ---- */

/* $KILN_MAX_INPUT_BYTES, else (also when it is not a positive number) 1 GiB. */
long long files_max_input_bytes(void);
/* The byte at S[*i], decoding a %XX escape (and moving *i past it). */
char files_next_byte(const char *s, size_t len, size_t *i);
/* $KILN_MAX_OUTPUT_BYTES, else (also when it is not a positive number) 100 MiB: the largest file output
 * returned as a data: URI. */
long long files_max_output_bytes(void);
/*
 * Open the file output PATH for reading: an absolute path to a regular file, not a symbolic link, not a
 * kernel pseudo-file (/proc, /sys, ...). The descriptor (*st its status), or a negative code with *err set.
 */
int files_open_output(const char *path, struct stat *st, struct kiln_error **err);
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
 * PUT the file output PATH (opened with files_open_output) to UPLOAD_URL/<basename> (streamed, with its
 * Content-Type); *out gets the URL the answer gave in Location (resolved), else the PUT URL. Non-2xx answers
 * fail with the status.
 */
int files_upload(char **out, const char *path, const char *upload_url, struct kiln_error **err);

/* ---- files_data.c: data: URIs ---- */

/*
 * Decode the payload S[0..LEN) of a data: URI into FD: base64 (percent-escapes and whitespace allowed,
 * padding optional) when BASE64, else percent-encoded bytes. Streams through a fixed buffer.
 */
int files_decode_data(int fd, const char *path, const char *s, size_t len, bool base64, const char *name,
                      struct kiln_error **err);
/* A data: URI with what FD holds (PATH: its MIME type, and for messages), base64-encoded, into *out (caller
 * frees): up to LIMIT bytes, or to its end when LIMIT < 0. */
int files_encode_data_uri(char **out, int fd, const char *path, long long limit, struct kiln_error **err);

#endif
