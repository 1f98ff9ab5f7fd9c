/* SPDX-License-Identifier: Apache-2.0 */
/* tests/registry/challenge.c: WWW-Authenticate parsing (kiln_challenge_parse), found cases of fuzz_challenge.
 */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "registry/http.h"

/* Parse a heap copy of TEXT (exactly its length, so that ASan sees a read past its end). */
static int parse(struct kiln_challenge *c, const char *text)
{
	char *h = strdup(text);
	int rc = kiln_challenge_parse(c, h);
	free(h);
	return rc;
}

Test(challenge, bearer_is_picked_with_its_parameters)
{
	struct kiln_challenge c;
	cr_assert_eq(parse(&c, "Basic realm=\"r\", Bearer realm=\"https://a/token\",service=\"reg\","
	                       "scope=\"repository:x:pull\""),
	             0);
	cr_assert_str_eq(c.scheme, "bearer");
	cr_assert_str_eq(c.realm, "https://a/token");
	cr_assert_str_eq(c.service, "reg");
	cr_assert_str_eq(c.scope, "repository:x:pull");
	kiln_challenge_release(&c);
}

/* fuzz_challenge: a header ending in white space read past its end (heap-buffer-overflow). */
Test(challenge, trailing_white_space_ends_the_header)
{
	const char *headers[] = {"Basservice=icNegotiate abc== ", "Basic realm=\"x\" ", "Bearer \t",
	                         "Bearer realm=a, "};
	for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
		struct kiln_challenge c;
		cr_assert_eq(parse(&c, headers[i]), 0, "'%s' refused", headers[i]);
		cr_assert_not_null(c.scheme);
		kiln_challenge_release(&c);
	}
	struct kiln_challenge c;
	cr_assert_eq(parse(&c, "Basic realm=\"x\" "), 0);
	cr_assert_str_eq(c.scheme, "basic");
	cr_assert_str_eq(c.realm, "x");
	kiln_challenge_release(&c);
	cr_assert_eq(parse(&c, "   "), -1);
	kiln_challenge_release(&c);
}
