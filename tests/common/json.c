/* SPDX-License-Identifier: Apache-2.0 */
/* tests/common/json.c: floats printed as Python's repr() prints them; everything else as jansson lays it out.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"

static void check_real(double d, const char *want)
{
	char text[KILN_JSON_REAL_MAX];
	int n = kiln_json_real(text, d);
	cr_assert_str_eq(text, want, "%.17g: got '%s', Python prints '%s'", d, text, want);
	cr_assert_eq((size_t)n, strlen(want));
}

Test(json, reals_print_as_python_repr)
{
	/* what CPython 3.11's repr() prints for each */
	check_real(0.95, "0.95");
	check_real(0.1 + 0.2, "0.30000000000000004");
	check_real(1.0, "1.0");
	check_real(-0.0, "-0.0");
	check_real(0.0, "0.0");
	check_real(100.0, "100.0");
	check_real(123.456, "123.456");
	check_real(-2.5, "-2.5");
	check_real(1e-4, "0.0001");
	check_real(1e-5, "1e-05");
	check_real(1.5e-7, "1.5e-07");
	check_real(1e15, "1000000000000000.0");
	check_real(1e16, "1e+16");
	check_real(1.2345678901234567e17, "1.2345678901234566e+17");
	check_real(1e100, "1e+100");
	check_real(5e-324, "5e-324");
	check_real(1.7976931348623157e308, "1.7976931348623157e+308");
	check_real(2.0 / 3.0, "0.6666666666666666");
	check_real(9007199254740993.0, "9007199254740992.0");
}

Test(json, reals_read_back_exactly_and_no_shorter_form_does)
{
	srand(7);
	for (int i = 0; i < 20000; i++) {
		uint64_t bits = ((uint64_t)rand() << 42) ^ ((uint64_t)rand() << 21) ^ (uint64_t)rand();
		double d;
		memcpy(&d, &bits, sizeof(d));
		if (!isfinite(d))
			continue;
		char text[KILN_JSON_REAL_MAX];
		kiln_json_real(text, d);
		cr_assert_eq(strtod(text, NULL), d, "'%s' does not read back as %.17g", text, d);
		/* count its significant digits (from the first nonzero one to the last); one fewer never
		 * reads back */
		char sig[KILN_JSON_REAL_MAX];
		int digits = 0;
		for (const char *s = text; *s && *s != 'e'; s++)
			if ((*s >= '1' && *s <= '9') || (digits > 0 && *s == '0'))
				sig[digits++] = *s;
		while (digits > 0 && sig[digits - 1] == '0')
			digits--;
		char shorter[64];
		if (digits > 2) {
			snprintf(shorter, sizeof(shorter), "%.*e", digits - 2, d);
			cr_assert_neq(strtod(shorter, NULL), d, "'%s' is shorter than '%s'", shorter, text);
		}
	}
}

Test(json, layout_matches_jansson_for_every_flag)
{
	json_t *v = json_loads(
	    "{\"b\": [1, \"x/y\", true, null, {}, [], {\"k\": \"\\u00e9\"}], \"a\": {\"z\": 2}}", 0, NULL);
	cr_assert_not_null(v);
	size_t flags[] = {0,
	                  JSON_COMPACT,
	                  JSON_INDENT(2),
	                  JSON_INDENT(4) | JSON_SORT_KEYS,
	                  JSON_ENSURE_ASCII,
	                  JSON_ESCAPE_SLASH | JSON_COMPACT,
	                  JSON_INDENT(2) | JSON_COMPACT};
	for (size_t i = 0; i < sizeof(flags) / sizeof(*flags); i++) {
		char *want = json_dumps(v, flags[i]);
		char *got = kiln_json_dumps(v, flags[i]);
		cr_assert_str_eq(got, want, "flags %zx", flags[i]);
		free(want);
		free(got);
	}
	json_decref(v);
}

Test(json, reals_inside_documents_and_alone)
{
	json_t *v = json_pack("{s:f, s:[f, i]}", "p", 0.95, "l", 1e-7, 3);
	char *got = kiln_json_dumps(v, JSON_COMPACT);
	cr_assert_str_eq(got, "{\"p\":0.95,\"l\":[1e-07,3]}");
	free(got);
	json_decref(v);
	json_t *r = json_real(0.1);
	got = kiln_json_dumps(r, 0);
	cr_assert_str_eq(got, "0.1");
	free(got);
	json_decref(r);
}

Test(json, appends_to_what_the_buffer_holds)
{
	_cleanup_buf_ struct kiln_buf b = KILN_BUF_INIT;
	kiln_buf_puts(&b, "data: ");
	json_t *s = json_string("caf\xc3\xa9");
	cr_assert_eq(kiln_json_dumpb(&b, s, JSON_ENSURE_ASCII), 0);
	cr_assert_str_eq(b.ptr, "data: \"caf\\u00E9\"");
	json_decref(s);
}
