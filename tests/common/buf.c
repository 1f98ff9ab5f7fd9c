/* SPDX-License-Identifier: Apache-2.0 */
/* tests/common/buf.c: the growable NUL-terminated buffer: put, printf, detach, growth. */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "common/buf.h"

Test(buf, put_and_puts_append_and_keep_nul)
{
	_cleanup_buf_ struct kiln_buf b = KILN_BUF_INIT;
	cr_assert_eq(kiln_buf_put(&b, "abc", 3), 0);
	cr_assert_eq(kiln_buf_puts(&b, "def"), 0);
	cr_assert_eq(b.len, 6);
	cr_assert_str_eq(b.ptr, "abcdef");
	cr_assert_eq(b.ptr[b.len], '\0');
	cr_assert_geq(b.cap, b.len + 1);
}

Test(buf, put_keeps_embedded_nul_bytes)
{
	_cleanup_buf_ struct kiln_buf b = KILN_BUF_INIT;
	cr_assert_eq(kiln_buf_put(&b, "a\0b", 3), 0);
	cr_assert_eq(b.len, 3);
	cr_assert_eq(memcmp(b.ptr, "a\0b", 4), 0);
}

Test(buf, put_of_zero_bytes_on_empty_buffer_gives_empty_string)
{
	_cleanup_buf_ struct kiln_buf b = KILN_BUF_INIT;
	cr_assert_eq(kiln_buf_put(&b, NULL, 0), 0);
	cr_assert_not_null(b.ptr);
	cr_assert_str_eq(b.ptr, "");
	cr_assert_eq(b.len, 0);
}

Test(buf, printf_appends_formatted_text)
{
	_cleanup_buf_ struct kiln_buf b = KILN_BUF_INIT;
	cr_assert_eq(kiln_buf_puts(&b, "size="), 0);
	cr_assert_eq(kiln_buf_printf(&b, "%d %s", 42, "bytes"), 0);
	cr_assert_eq(kiln_buf_printf(&b, "%s", ""), 0);
	cr_assert_str_eq(b.ptr, "size=42 bytes");
	cr_assert_eq(b.len, strlen("size=42 bytes"));
}

Test(buf, printf_longer_than_initial_capacity)
{
	_cleanup_buf_ struct kiln_buf b = KILN_BUF_INIT;
	char big[1000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	cr_assert_eq(kiln_buf_printf(&b, "<%s>", big), 0);
	cr_assert_eq(b.len, 1001);
	cr_assert_eq(b.ptr[0], '<');
	cr_assert_eq(b.ptr[1000], '>');
	cr_assert_eq(b.ptr[1001], '\0');
}

Test(buf, detach_hands_string_over_and_empties_buffer)
{
	struct kiln_buf b = KILN_BUF_INIT;
	kiln_buf_puts(&b, "hello");
	char *s = kiln_buf_detach(&b);
	cr_assert_str_eq(s, "hello");
	cr_assert_null(b.ptr);
	cr_assert_eq(b.len, 0);
	cr_assert_eq(b.cap, 0);
	free(s);
	kiln_buf_release(&b);
}

Test(buf, detach_of_empty_buffer_gives_empty_string)
{
	struct kiln_buf b = KILN_BUF_INIT;
	char *s = kiln_buf_detach(&b);
	cr_assert_not_null(s);
	cr_assert_str_eq(s, "");
	free(s);
}

Test(buf, grows_over_many_kib_without_losing_content)
{
	_cleanup_buf_ struct kiln_buf b = KILN_BUF_INIT;
	size_t lines = 20000; /* about 200 KiB */
	for (size_t i = 0; i < lines; i++)
		cr_assert_eq(kiln_buf_printf(&b, "%08zu\n", i), 0);
	cr_assert_eq(b.len, lines * 9);
	cr_assert_eq(strlen(b.ptr), b.len);
	for (size_t i = 0; i < lines; i += 997) {
		char want[16];
		snprintf(want, sizeof(want), "%08zu\n", i);
		cr_assert_eq(memcmp(b.ptr + i * 9, want, 9), 0, "line %zu", i);
	}
	char chunk[4096];
	memset(chunk, 'z', sizeof(chunk));
	for (int i = 0; i < 64; i++)
		cr_assert_eq(kiln_buf_put(&b, chunk, sizeof(chunk)), 0);
	cr_assert_eq(b.len, lines * 9 + 64 * sizeof(chunk));
	cr_assert_eq(b.ptr[b.len - 1], 'z');
	cr_assert_eq(b.ptr[b.len], '\0');
	cr_assert_geq(b.cap, b.len + 1);
}

Test(buf, release_resets_and_buffer_is_reusable)
{
	struct kiln_buf b = KILN_BUF_INIT;
	kiln_buf_puts(&b, "one");
	kiln_buf_release(&b);
	cr_assert_null(b.ptr);
	cr_assert_eq(b.len, 0);
	kiln_buf_puts(&b, "two");
	cr_assert_str_eq(b.ptr, "two");
	kiln_buf_release(&b);
	kiln_buf_release(&b);
}
