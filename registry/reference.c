/* SPDX-License-Identifier: Apache-2.0 */
/* reference.c: parsing and normalizing image references with Docker's rules. */
#include "registry/reference.h"
#include "common/cleanup.h"
#include "layers/digest.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_REGISTRY "docker.io"

static bool lower_alnum(unsigned char c)
{
	return islower(c) || isdigit(c);
}

/* A path component, Docker's grammar: [a-z0-9]+ (separator [a-z0-9]+)* where a separator is '.', '_',
 * '__' or one or more '-'. */
static bool valid_component(const char *s, size_t n)
{
	size_t i = 0;
	for (;;) {
		size_t start = i;
		while (i < n && lower_alnum((unsigned char)s[i]))
			i++;
		if (i == start)
			return false;
		if (i == n)
			return true;
		if (s[i] == '.')
			i++;
		else if (s[i] == '_')
			i += i + 1 < n && s[i + 1] == '_' ? 2 : 1;
		else if (s[i] == '-')
			while (i < n && s[i] == '-')
				i++;
		else
			return false;
	}
}

static bool valid_tag(const char *t)
{
	size_t n = strlen(t);
	if (n == 0 || n > 128 || !(isalnum((unsigned char)t[0]) || t[0] == '_'))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(isalnum((unsigned char)t[i]) || t[i] == '_' || t[i] == '.' || t[i] == '-'))
			return false;
	return true;
}

/* The first component names a registry when it has a '.' or ':' or is "localhost" (Docker's rule). */
static bool looks_like_registry(const char *s, size_t n)
{
	return memchr(s, '.', n) || memchr(s, ':', n) || (n == 9 && memcmp(s, "localhost", 9) == 0);
}

int kiln_reference_parse(struct kiln_reference **out, const char *s, struct kiln_error **err)
{
	if (s == NULL || *s == '\0')
		return kiln_error_set(err, KILN_EINVAL, "invalid reference '': empty");
	if (strlen(s) > 4096)
		return kiln_error_set(err, KILN_EINVAL, "invalid reference: longer than 4096 characters");
	struct kiln_reference *r = calloc(1, sizeof(*r));
	_cleanup_free_ char *copy = strdup(s);
	if (r == NULL || copy == NULL) {
		free(r);
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	char *rest = copy;
	char *at = strchr(rest, '@');
	if (at) {
		*at = '\0';
		if (!kiln_digest_valid(at + 1)) {
			kiln_reference_free(r);
			return kiln_error_set(err, KILN_EINVAL, "invalid reference '%s': bad digest '%s'", s,
			                      at + 1);
		}
		r->digest = strdup(at + 1);
	}
	char *slash = strchr(rest, '/');
	if (slash && looks_like_registry(rest, (size_t)(slash - rest))) {
		*slash = '\0';
		r->named_registry = true;
		r->registry = strdup(strcmp(rest, "index.docker.io") == 0 ? DEFAULT_REGISTRY : rest);
		rest = slash + 1;
		for (char *p = r->registry; *p; p++)
			if (!(isalnum((unsigned char)*p) || *p == '.' || *p == '-' || *p == ':' ||
			      *p == '[' || *p == ']')) {
				kiln_reference_free(r);
				return kiln_error_set(err, KILN_EINVAL,
				                      "invalid reference '%s': bad registry name", s);
			}
	} else {
		r->registry = strdup(DEFAULT_REGISTRY);
	}
	char *colon = strrchr(rest, ':');
	if (colon && !strchr(colon, '/')) {
		*colon = '\0';
		if (!valid_tag(colon + 1)) {
			kiln_reference_free(r);
			return kiln_error_set(err, KILN_EINVAL, "invalid reference '%s': bad tag '%s'", s,
			                      colon + 1);
		}
		r->tag = strdup(colon + 1);
	}
	for (const char *c = rest;;) {
		const char *e = strchr(c, '/');
		size_t n = e ? (size_t)(e - c) : strlen(c);
		if (!valid_component(c, n)) {
			kiln_reference_free(r);
			return kiln_error_set(
			    err, KILN_EINVAL,
			    "invalid reference '%s': repository '%s' must be lowercase letters, "
			    "digits and separators",
			    s, rest);
		}
		if (!e)
			break;
		c = e + 1;
	}
	if (strcmp(r->registry, DEFAULT_REGISTRY) == 0 && !strchr(rest, '/')) {
		if (asprintf(&r->repository, "library/%s", rest) < 0)
			r->repository = NULL;
	} else {
		r->repository = strdup(rest);
	}
	if (r->tag == NULL && r->digest == NULL)
		r->tag = strdup("latest");
	if (r->registry == NULL || r->repository == NULL) {
		kiln_reference_free(r);
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	*out = r;
	return 0;
}

static char *format(const struct kiln_reference *r, const char *registry, const char *repo)
{
	char *s = NULL;
	if (asprintf(&s, "%s%s%s%s%s%s%s", registry ? registry : "", registry ? "/" : "", repo,
	             r->tag ? ":" : "", r->tag ? r->tag : "", r->digest ? "@" : "",
	             r->digest ? r->digest : "") < 0)
		return NULL;
	return s;
}

char *kiln_reference_string(const struct kiln_reference *r)
{
	return format(r, r->registry, r->repository);
}

char *kiln_reference_familiar(const struct kiln_reference *r)
{
	/* Docker Hub's name goes, unless the repository's first component would then be taken for a
	 * registry ("docker.io/a.b/c" is not "a.b/c") */
	const char *repo = r->repository;
	if (strcmp(r->registry, DEFAULT_REGISTRY) != 0 ||
	    (strchr(repo, '/') && looks_like_registry(repo, strcspn(repo, "/"))))
		return format(r, r->registry, repo);
	if (strncmp(repo, "library/", 8) == 0 && !strchr(repo + 8, '/'))
		repo += 8;
	return format(r, NULL, repo);
}

void kiln_reference_free(struct kiln_reference *r)
{
	if (r == NULL)
		return;
	free(r->registry);
	free(r->repository);
	free(r->tag);
	free(r->digest);
	free(r);
}
