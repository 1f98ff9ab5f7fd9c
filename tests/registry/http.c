/* SPDX-License-Identifier: Apache-2.0 */
/* tests/registry/http.c: the registry client's header handling: Retry-After, Content-Range, header lines. */
#include <criterion/criterion.h>

#include <math.h>
#include <string.h>
#include <time.h>

#include "registry/http.h"

Test(http, retry_after_is_delay_seconds_or_an_http_date)
{
	cr_assert_eq(kiln_http_retry_after_seconds("3"), 3);
	cr_assert_eq(kiln_http_retry_after_seconds("0"), 0);
	cr_assert_eq(kiln_http_retry_after_seconds("120"), 120);
	cr_assert_eq(kiln_http_retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT"), 0, "a date past is now");
	double future = kiln_http_retry_after_seconds("Fri, 01 Jan 2100 00:00:00 GMT");
	cr_assert(future > 1e9 && isfinite(future));
	/* found by fuzz_headers: strtod took these, and "nan" made the backoff wait forever */
	const char *bad[] = {"", "nan", "NaN", "inf", "1e308", "2121e30820", "1.5", "-3", "0x10", " 3", "3 "};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(kiln_http_retry_after_seconds(bad[i]), -1, "'%s'", bad[i]);
	cr_assert_eq(kiln_http_retry_after_seconds(NULL), -1);
	double huge = kiln_http_retry_after_seconds("99999999999999999999999999999999999999");
	cr_assert(isfinite(huge) && huge >= 1e9, "a huge number of seconds stays a number: %g", huge);
}

Test(http, backoff_after_a_retry_after_that_is_not_a_number_is_the_usual_one)
{
	struct kiln_error *err = NULL;
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	cr_assert_eq(kiln_http_backoff(0.01, 0, "nan", NULL, &err), 0);
	clock_gettime(CLOCK_MONOTONIC, &b);
	double took = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
	cr_assert(took < 5, "waited %g s (a NaN wait never ends)", took);
}

Test(http, content_range_gives_its_first_byte)
{
	uint64_t first = 7;
	cr_assert_eq(kiln_http_content_range_first("bytes 1000000-2999999/3000000", &first), 0);
	cr_assert_eq(first, 1000000);
	cr_assert_eq(kiln_http_content_range_first("bytes 0-0/*", &first), 0);
	cr_assert_eq(first, 0);
	cr_assert_eq(kiln_http_content_range_first("items 1-2/3", &first), -1);
	cr_assert_eq(kiln_http_content_range_first(NULL, &first), -1);
}

Test(http, header_lines_keep_what_the_client_needs_and_a_status_line_starts_over)
{
	struct kiln_http_response r = {0};
	const char *lines[] = {"HTTP/1.1 307 Temporary Redirect\r\n",
	                       "Location: https://a.example/x\r\n",
	                       "HTTP/1.1 401 Unauthorized\r\n",
	                       "www-authenticate: Bearer realm=\"r\"\r\n",
	                       "WWW-Authenticate: Basic realm=\"b\" \r\n",
	                       "Retry-After:\t5\r\n",
	                       "X-Other: ignored\r\n",
	                       "no colon here\r\n"};
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		kiln_http_header_line(&r, lines[i], strlen(lines[i]));
	cr_assert_null(r.location, "the redirect's Location is not the answer's");
	cr_assert_str_eq(r.www_authenticate, "Bearer realm=\"r\", Basic realm=\"b\"");
	cr_assert_str_eq(r.retry_after, "5");
	kiln_http_response_release(&r);
}
