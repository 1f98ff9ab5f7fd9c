/* SPDX-License-Identifier: Apache-2.0 */
/* log.h: the shim's JSON-lines log, Cog's timestamps and JSON text helpers (log.c; the bottom layer). */
#ifndef KILN_SHIM_LOG_H
#define KILN_SHIM_LOG_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <time.h>

#include "common/buf.h"

#define SHIM_TIME_LEN 40 /* "2024-01-02T03:04:05.123456+00:00" and its NUL */

/* TEXT as a JSON string: in BUF (SIZE bytes) when it needs no escape and fits, else appended to SPILL by
 * jansson ("null" when even that fails). For the ids in log lines without a malloc. */
const char *shim_quoted(const char *text, char *buf, size_t size, struct kiln_buf *spill);
/* T seconds as JSON number text with microseconds ("0.000331"), into OUT. */
void shim_seconds_text(char out[32], double t);

/* Append V's JSON text to B. 0, or -1 when memory runs out. */
int shim_put_json(struct kiln_buf *b, const json_t *v);
/* Append the JSON string for TEXT (LEN bytes) to B: as it is when JSON needs no escape in it, else written
 * by jansson, with what is not UTF-8 replaced by U+FFFD (shim_json_text). 0, or -1 when memory runs out. */
int shim_put_text(struct kiln_buf *b, const char *text, size_t len);

/* Where shim_log writes: stderr, or the shim's own copy of it while native.c captures fds 1 and 2. */
extern FILE *shim_log_file;
/* Write one JSON log line to stderr, Cog's keys: {"timestamp", "severity" (LEVEL "info", "warning" or
 * "error" as "INFO", ...), "message"} plus EXTRA's keys (stolen; may be NULL). LOG_FORMAT=development:
 * "TIMESTAMP [level] message key=value ..." instead. */
void shim_log(const char *level, json_t *extra, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The same line with the message TEXT[0..LEN), as it is (a NUL too; bytes that are not UTF-8 become U+FFFD).
 */
void shim_log_text(const char *level, json_t *extra, const char *text, size_t len);
/* TEXT[0..LEN) as a JSON string, NULs kept, each byte that is not part of a UTF-8 sequence replaced by
 * U+FFFD, as Python's errors="replace" does (NULL when memory runs out). */
json_t *shim_json_text(const char *text, size_t len);
/* Whether TEXT[0..LEN) is UTF-8 (RFC 3629). */
bool shim_utf8_valid(const char *text, size_t len);
/* Append TEXT[0..LEN) to B with each byte that is not part of a UTF-8 sequence replaced by U+FFFD. 0, or -1
 * when memory runs out. */
int shim_put_utf8(struct kiln_buf *b, const char *text, size_t len);
/* The same line without jansson, for the lines of every prediction: MSG is text that JSON writes as it is
 * (no quote, backslash or control character), and FIELDS a printf format of the line's further members,
 * JSON text such as "\"prediction_id\":\"%s\"" whose arguments need no escaping either. */
void shim_log_fields(const char *level, const char *msg, const char *fields, ...)
    __attribute__((format(printf, 3, 4)));
/* With ON, hold this thread's log lines back (for a stretch that takes s->lock, or one request); with !ON,
 * end the stretch: the outermost end writes them, in one write(2). Stretches nest. */
void shim_log_defer(bool on);
/* The current time as Cog writes it: RFC 3339 with microseconds and "+00:00". */
void shim_now(char out[SHIM_TIME_LEN]);
/* Seconds from A to now, CLOCK_MONOTONIC. */
double shim_since(const struct timespec *a);

#endif
