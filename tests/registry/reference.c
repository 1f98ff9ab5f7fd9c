/* SPDX-License-Identifier: Apache-2.0 */
/* tests/registry/reference.c: parsing image references and normalizing them as Docker does. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry/reference.h"

#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

/* The last reference parsed, released by the suite's fini even when an assertion fails. */
static struct kiln_reference *last;

static void release_last(void)
{
	kiln_reference_free(last);
	last = NULL;
}

TestSuite(reference, .fini = release_last);

/* Parse S expecting success; the result is also kept in `last` (a later parse_ok frees the earlier). */
static struct kiln_reference *parse_ok(const char *s)
{
	release_last();
	struct kiln_reference *r = NULL;
	struct kiln_error *err = NULL;
	int rc = kiln_reference_parse(&r, s, &err);
	cr_assert_eq(rc, 0, "'%s': %s", s, err ? err->message : "");
	cr_assert_not_null(r);
	last = r;
	return r;
}

static void assert_forms(const struct kiln_reference *r, const char *full, const char *familiar)
{
	char *f = kiln_reference_string(r);
	char *s = kiln_reference_familiar(r);
	cr_assert_str_eq(f, full);
	cr_assert_str_eq(s, familiar);
	free(f);
	free(s);
}

/* Parse S expecting KILN_EINVAL, a message that quotes S, and (when non-NULL) mentions WHAT. */
static void assert_invalid(const char *s, const char *what)
{
	struct kiln_reference *r = NULL;
	struct kiln_error *err = NULL;
	int rc = kiln_reference_parse(&r, s, &err);
	release_last();
	last = r; /* freed by fini when S was wrongly accepted */
	cr_assert_eq(rc, KILN_EINVAL, "'%s' was accepted", s);
	cr_assert_null(r);
	cr_assert_not_null(err);
	cr_assert_eq(err->code, KILN_EINVAL);
	char quoted[512];
	snprintf(quoted, sizeof(quoted), "'%s'", s);
	cr_assert_not_null(strstr(err->message, quoted), "message for '%s': %s", s, err->message);
	if (what)
		cr_assert_not_null(strstr(err->message, what), "message for '%s': %s", s, err->message);
	kiln_error_free(err);
}

Test(reference, bare_name_gets_docker_hub_library_and_latest)
{
	struct kiln_reference *r = parse_ok("hello");
	cr_assert_str_eq(r->registry, "docker.io");
	cr_assert_str_eq(r->repository, "library/hello");
	cr_assert_str_eq(r->tag, "latest");
	cr_assert_null(r->digest);
	cr_assert(!r->named_registry);
	assert_forms(r, "docker.io/library/hello:latest", "hello:latest");
}

Test(reference, full_docker_hub_form_is_shortened_in_familiar_form)
{
	struct kiln_reference *r = parse_ok("docker.io/library/hello:1.0");
	cr_assert_str_eq(r->registry, "docker.io");
	cr_assert_str_eq(r->repository, "library/hello");
	assert_forms(r, "docker.io/library/hello:1.0", "hello:1.0");

	r = parse_ok("docker.io/hello");
	cr_assert_str_eq(r->repository, "library/hello");
}

/* fuzz_reference: "docker.io/a.b/c" was shortened to "a.b/c", which names the registry a.b. */
Test(reference, familiar_form_keeps_docker_hub_when_the_repository_looks_like_a_registry)
{
	struct kiln_reference *r = parse_ok("docker.io/libdocker.iory/he");
	cr_assert_str_eq(r->registry, "docker.io");
	cr_assert_str_eq(r->repository, "libdocker.iory/he");
	assert_forms(r, "docker.io/libdocker.iory/he:latest", "docker.io/libdocker.iory/he:latest");
	r = parse_ok("docker.io/localhost/m:1");
	assert_forms(r, "docker.io/localhost/m:1", "docker.io/localhost/m:1");
	r = parse_ok("docker.io/user/model:1");
	assert_forms(r, "docker.io/user/model:1", "user/model:1");
}

Test(reference, registry_with_port_and_nested_repository)
{
	struct kiln_reference *r = parse_ok("localhost:5000/a/b:v1");
	cr_assert_str_eq(r->registry, "localhost:5000");
	cr_assert(r->named_registry);
	cr_assert_str_eq(r->repository, "a/b");
	cr_assert_str_eq(r->tag, "v1");
	cr_assert_null(r->digest);
	assert_forms(r, "localhost:5000/a/b:v1", "localhost:5000/a/b:v1");
}

Test(reference, localhost_alone_is_a_registry)
{
	struct kiln_reference *r = parse_ok("localhost/m");
	cr_assert_str_eq(r->registry, "localhost");
	cr_assert(r->named_registry);
	cr_assert_str_eq(r->repository, "m");
	cr_assert_str_eq(r->tag, "latest");
}

Test(reference, digest_alone_leaves_tag_null)
{
	struct kiln_reference *r = parse_ok("ghcr.io/org/m@sha256:" HEX64);
	cr_assert_str_eq(r->registry, "ghcr.io");
	cr_assert_str_eq(r->repository, "org/m");
	cr_assert_null(r->tag);
	cr_assert_str_eq(r->digest, "sha256:" HEX64);
	assert_forms(r, "ghcr.io/org/m@sha256:" HEX64, "ghcr.io/org/m@sha256:" HEX64);
}

Test(reference, tag_and_digest_are_both_kept)
{
	struct kiln_reference *r = parse_ok("localhost:5000/m:v2@sha256:" HEX64);
	cr_assert_str_eq(r->registry, "localhost:5000");
	cr_assert_str_eq(r->repository, "m");
	cr_assert_str_eq(r->tag, "v2");
	cr_assert_str_eq(r->digest, "sha256:" HEX64);
	assert_forms(r, "localhost:5000/m:v2@sha256:" HEX64, "localhost:5000/m:v2@sha256:" HEX64);
}

Test(reference, two_component_name_goes_to_docker_hub_without_library)
{
	struct kiln_reference *r = parse_ok("org/m:tag");
	cr_assert_str_eq(r->registry, "docker.io");
	cr_assert_str_eq(r->repository, "org/m");
	cr_assert_str_eq(r->tag, "tag");
	assert_forms(r, "docker.io/org/m:tag", "org/m:tag");
}

Test(reference, separators_inside_components_are_accepted)
{
	struct kiln_reference *r = parse_ok("my-org/my_model.v2__x:Tag_1.0-rc");
	cr_assert_str_eq(r->repository, "my-org/my_model.v2__x");
	cr_assert_str_eq(r->tag, "Tag_1.0-rc");
}

Test(reference, uppercase_repository_is_invalid)
{
	assert_invalid("Hello", "lowercase");
	assert_invalid("org/Model:v1", "lowercase");
}

Test(reference, empty_reference_is_invalid)
{
	assert_invalid("", "empty");
	struct kiln_reference *r = NULL;
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_reference_parse(&r, NULL, &err), KILN_EINVAL);
	kiln_error_free(err);
}

Test(reference, bad_tag_is_invalid)
{
	assert_invalid("a:-x", "bad tag '-x'");
	assert_invalid("a:", "bad tag");
	assert_invalid("a:x!y", "bad tag");
}

Test(reference, bad_digest_is_invalid)
{
	assert_invalid("a@sha256:abc", "bad digest");
	assert_invalid("a@md5:" HEX64, "bad digest");
	assert_invalid("a@sha256:"
	               "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
	               "bad digest");
}

Test(reference, spaces_are_invalid)
{
	assert_invalid("a b", NULL);
	assert_invalid(" hello", NULL);
	assert_invalid("hello :v1", NULL);
}

Test(reference, malformed_components_are_invalid)
{
	assert_invalid("org//m", NULL);
	assert_invalid("-m", NULL);
	assert_invalid("m-", NULL);
	assert_invalid("a..b", NULL);
	assert_invalid("org/", NULL);
}

Test(reference, free_accepts_null)
{
	kiln_reference_free(NULL);
}

Test(reference, separator_sequences_docker_rejects_are_invalid)
{
	/* Docker's separator is one of "." "_" "__" or a run of "-", never mixed or longer */
	assert_invalid("a___b", NULL);
	assert_invalid("a_.b", NULL);
	assert_invalid("a-.b", NULL);
	assert_invalid("a__-b", NULL);
}

Test(reference, legacy_index_docker_io_is_normalized_to_docker_io)
{
	struct kiln_reference *r = parse_ok("index.docker.io/hello");
	cr_assert_str_eq(r->registry, "docker.io");
	cr_assert_str_eq(r->repository, "library/hello");
	assert_forms(r, "docker.io/library/hello:latest", "hello:latest");
}
