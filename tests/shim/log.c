/* SPDX-License-Identifier: Apache-2.0 */
/* tests/shim/log.c: the shim's JSON-lines log: any text carried through (NULs too), threads' buffers freed.
 */
#include <criterion/criterion.h>

#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim/log.h"

/* What the log wrote while FN ran, as one string (caller frees). */
static char *logged(void (*fn)(void))
{
	FILE *f = tmpfile();
	cr_assert(f);
	shim_log_file = f;
	fn();
	shim_log_file = NULL;
	long n = ftell(f) >= 0 ? (fseek(f, 0, SEEK_END), ftell(f)) : 0;
	char *out = calloc(1, (size_t)n + 1);
	rewind(f);
	cr_assert_eq(fread(out, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return out;
}

static void log_nul(void)
{
	shim_log_text("info", json_pack("{s:s}", "source", "stdout"), "a\0b\xff", 4);
}

Test(log, text_keeps_nuls_and_replaces_what_is_not_utf8)
{
	char *out = logged(log_nul);
	json_t *line = json_loads(out, JSON_ALLOW_NUL, NULL);
	cr_assert(line, "%s", out);
	json_t *msg = json_object_get(line, "message");
	cr_assert_eq(json_string_length(msg), 4, "%s", out);
	cr_assert(memcmp(json_string_value(msg), "a\0b?", 4) == 0, "%s", out);
	cr_assert_str_eq(json_string_value(json_object_get(line, "source")), "stdout");
	json_decref(line);
	free(out);
}

/* A thread that holds its log lines back, as the server's request threads do. */
static void *deferring_thread(void *arg)
{
	(void)arg;
	shim_log_defer(true);
	shim_log("info", NULL, "a line held back");
	shim_log_defer(false);
	return NULL;
}

static void run_threads(void)
{
	for (int i = 0; i < 64; i++) {
		pthread_t t;
		cr_assert_eq(pthread_create(&t, NULL, deferring_thread, NULL), 0);
		pthread_join(t, NULL);
	}
}

Test(log, a_threads_deferred_buffer_is_freed_when_it_ends)
{
	free(logged(run_threads)); /* the first threads: arenas and stdio set up */
	size_t before = mallinfo2().uordblks;
	free(logged(run_threads));
	size_t after = mallinfo2().uordblks;
	/* 64 threads each with a buffer of 4 KiB: 256 KiB if they were kept */
	cr_assert_lt(after > before ? after - before : 0, 64 * 1024, "%zu bytes more", after - before);
}
