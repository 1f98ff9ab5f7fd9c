/* SPDX-License-Identifier: Apache-2.0 */
/* challenge.c: parsing WWW-Authenticate headers (RFC 7235) into the scheme and the Bearer parameters. */
#include "registry/http.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_CHALLENGES 8

static const char *skip_space(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

static bool is_token_char(char c)
{
	return c && !isspace((unsigned char)c) && c != ',' && c != '=' && c != '"';
}

/* A quoted-string starting at P (after the opening quote) with backslash escapes; *end past the quote. */
static char *quoted(const char *p, const char **end)
{
	size_t n = strlen(p);
	char *v = malloc(n + 1);
	if (v == NULL)
		return NULL;
	size_t o = 0;
	while (*p && *p != '"') {
		if (*p == '\\' && p[1])
			p++;
		v[o++] = *p++;
	}
	v[o] = '\0';
	*end = *p == '"' ? p + 1 : p;
	return v;
}

void kiln_challenge_release(struct kiln_challenge *c)
{
	if (c == NULL)
		return;
	free(c->scheme);
	free(c->realm);
	free(c->service);
	free(c->scope);
	free(c->error);
	memset(c, 0, sizeof(*c));
}

/* Store a parameter of the challenge C (only those the client uses). */
static void set_param(struct kiln_challenge *c, const char *name, size_t name_len, char *value)
{
	char **slot = NULL;
	if (name_len == 5 && strncasecmp(name, "realm", 5) == 0)
		slot = &c->realm;
	else if (name_len == 7 && strncasecmp(name, "service", 7) == 0)
		slot = &c->service;
	else if (name_len == 5 && strncasecmp(name, "scope", 5) == 0)
		slot = &c->scope;
	else if (name_len == 5 && strncasecmp(name, "error", 5) == 0)
		slot = &c->error;
	if (slot == NULL) {
		free(value);
		return;
	}
	free(*slot);
	*slot = value;
}

int kiln_challenge_parse(struct kiln_challenge *out, const char *header)
{
	memset(out, 0, sizeof(*out));
	if (header == NULL)
		return -1;
	struct kiln_challenge all[MAX_CHALLENGES];
	memset(all, 0, sizeof(all));
	int count = 0;
	const char *p = header;
	while (*p) {
		p = skip_space(p);
		if (*p == '\0')
			break; /* white space at the end: stepping over the NUL read past the header */
		if (*p == ',') {
			p++;
			continue;
		}
		if (!is_token_char(*p)) {
			p++;
			continue;
		}
		const char *tok = p;
		while (is_token_char(*p))
			p++;
		size_t tok_len = (size_t)(p - tok);
		const char *q = skip_space(p);
		if (*q == '=' && q[1] != '=' && count > 0) {
			/* name=value of the current challenge */
			q = skip_space(q + 1);
			char *value;
			if (*q == '"') {
				value = quoted(q + 1, &q);
			} else {
				const char *v = q;
				while (*q && *q != ',' && !isspace((unsigned char)*q))
					q++;
				value = strndup(v, (size_t)(q - v));
			}
			if (value)
				set_param(&all[count - 1], tok, tok_len, value);
			p = q;
			continue;
		}
		if (*q == '=') {
			/* token68 (or stray '='s): skip it */
			while (*q == '=')
				q++;
			p = q;
			continue;
		}
		/* a new challenge's scheme */
		if (count == MAX_CHALLENGES)
			break;
		char *scheme = strndup(tok, tok_len);
		if (scheme == NULL)
			break;
		for (char *s = scheme; *s; s++)
			*s = (char)tolower((unsigned char)*s);
		all[count++].scheme = scheme;
	}
	int pick = -1;
	for (int i = 0; i < count; i++)
		if (strcmp(all[i].scheme, "bearer") == 0 && pick < 0)
			pick = i;
	if (pick < 0 && count > 0)
		pick = 0;
	for (int i = 0; i < count; i++) {
		if (i == pick)
			*out = all[i];
		else
			kiln_challenge_release(&all[i]);
	}
	return pick < 0 ? -1 : 0;
}
