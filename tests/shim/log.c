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
	cr_assert_eq(json_string_length(msg), 6, "%s", out);
	cr_assert(memcmp(json_string_value(msg), "a\0b\xef\xbf\xbd", 6) == 0, "%s", out);
	cr_assert_str_eq(json_string_value(json_object_get(line, "source")), "stdout");
	json_decref(line);
	free(out);
}

/* TEXT (LEN bytes) with what is not UTF-8 replaced, as shim_put_utf8 writes it (caller frees). */
static char *repaired(const char *text, size_t len)
{
	struct kiln_buf b = KILN_BUF_INIT;
	cr_assert_eq(shim_put_utf8(&b, text, len), 0);
	cr_assert(kiln_buf_puts(&b, "") == 0);
	return b.ptr;
}

Test(log, bytes_that_are_not_utf8_become_replacement_characters)
{
	static const struct {
		const char *in;
		size_t len;
		const char *out;
		bool valid;
	} cases[] = {
	    {"plain", 5, "plain", true},
	    {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
	     true},
	    {"a\0b", 3, "a\0b", true},
	    {"caf\xe9", 4, "caf\xef\xbf\xbd", false},           /* Latin-1 */
	    {"\xc3\x28", 2, "\xef\xbf\xbd(", false},            /* a lead byte without its continuation */
	    {"\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd", false}, /* an overlong '/' */
	    {"\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", false}, /* a surrogate */
	    {"\xf4\x90\x80\x80", 4, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd",
	     false},                                            /* above U+10FFFF */
	    {"\xe2\x82", 2, "\xef\xbf\xbd\xef\xbf\xbd", false}, /* cut short at the end */
	    {"\xff\xfe", 2, "\xef\xbf\xbd\xef\xbf\xbd", false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cr_assert_eq(shim_utf8_valid(cases[i].in, cases[i].len), cases[i].valid, "case %zu", i);
		char *got = repaired(cases[i].in, cases[i].len);
		size_t want_len = cases[i].valid ? cases[i].len : strlen(cases[i].out);
		cr_assert(memcmp(got, cases[i].out, want_len) == 0 && got[want_len] == '\0', "case %zu: %s",
		          i, got);
		cr_assert(shim_utf8_valid(got, want_len), "case %zu: the repair is UTF-8", i);
		free(got);
	}
}

Test(log, json_text_of_bytes_that_are_not_utf8_is_written_with_replacement_characters)
{
	/* found by fuzz_worker: an unknown event's type cut at 64 bytes in the middle of a character made a
	 * prediction's error, and then its whole response, impossible to write */
	struct kiln_buf b = KILN_BUF_INIT;
	cr_assert_eq(shim_put_text(&b, "unknown event 'caf\xc3", 19), 0);
	cr_assert(kiln_buf_puts(&b, "") == 0);
	cr_assert_str_eq(b.ptr, "\"unknown event 'caf\xef\xbf\xbd\"");
	kiln_buf_release(&b);
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
