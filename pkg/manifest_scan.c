/* SPDX-License-Identifier: Apache-2.0 */
/* manifest_scan.c: the first pass over a manifest, before it is loaded: encoding, directives, tags, nesting.
 */
#include "pkg/manifest_yaml.h"

#include <stdio.h>
#include <string.h>

#define CORE_PREFIX "tag:yaml.org,2002:"

/*
 * libyaml reads UTF-16 too (with a byte order mark), and would count positions in its characters; Cog's
 * files are UTF-8. A NUL in the first two bytes is UTF-16 or UTF-32 without a mark.
 */
static int check_encoding(struct mparser *p)
{
	const unsigned char *s = (const unsigned char *)p->text;
	size_t n = p->len;
	const char *enc = NULL;
	if (n >= 4 && ((s[0] == 0 && s[1] == 0 && s[2] == 0xFE && s[3] == 0xFF) ||
	               (s[0] == 0xFF && s[1] == 0xFE && s[2] == 0 && s[3] == 0)))
		enc = "UTF-32";
	else if (n >= 2 && ((s[0] == 0xFE && s[1] == 0xFF) || (s[0] == 0xFF && s[1] == 0xFE)))
		enc = "UTF-16";
	else if ((n >= 1 && s[0] == 0) || (n >= 2 && s[1] == 0))
		enc = "UTF-16 or UTF-32";
	if (enc == NULL)
		return 0;
	return mfail_at(p, (yaml_mark_t){0, 0, 0}, "the file is %s; a manifest must be UTF-8", enc);
}

/* The position of the directive line starting with NAME in the directives of the document event EV. */
static yaml_mark_t directive_mark(struct mparser *p, const yaml_event_t *ev, const char *name)
{
	size_t n = strlen(name);
	for (size_t line = ev->start_mark.line; line <= ev->end_mark.line && line < p->nlines; line++)
		if (strncmp(p->text + p->lines[line], name, n) == 0)
			return (yaml_mark_t){p->lines[line], line, 0};
	return ev->start_mark;
}

/*
 * '%YAML 1.1' asks for YAML 1.1's meanings (yes/no booleans, 0755 octal, 1:30 sexagesimal) that kiln
 * does not give, and '%TAG' only serves tags kiln refuses: both are errors rather than silently read
 * otherwise. '%YAML 1.2' says what kiln does and is accepted.
 */
static int check_directives(struct mparser *p, const yaml_event_t *ev)
{
	const yaml_version_directive_t *v = ev->data.document_start.version_directive;
	if (v && !(v->major == 1 && v->minor == 2))
		return mfail_at(p, directive_mark(p, ev, "%YAML"),
		                "'%%YAML %d.%d': kiln reads manifests as YAML 1.2; remove the directive",
		                v->major, v->minor);
	if (ev->data.document_start.tag_directives.start != ev->data.document_start.tag_directives.end)
		return mfail_at(p, directive_mark(p, ev, "%TAG"),
		                "'%%TAG' directives are not supported (nor are tags other than YAML's own)");
	return 0;
}

/* How a tag is written: "!!int" for YAML's own, "!x" for local ones, "!<uri>" for the rest; long ones cut. */
struct tag_text {
	char s[MANIFEST_QUOTE_MAX + 8];
};

static struct tag_text tag_text(const char *tag)
{
	struct tag_text t;
	size_t core = strlen(CORE_PREFIX);
	if (strncmp(tag, CORE_PREFIX, core) == 0)
		snprintf(t.s, sizeof(t.s), "!!%s", mquote(tag + core).s);
	else if (tag[0] == '!')
		snprintf(t.s, sizeof(t.s), "%s", mquote(tag).s);
	else
		snprintf(t.s, sizeof(t.s), "!<%s>", mquote(tag).s);
	return t;
}

/* Whether the text of a scalar tagged !!WANT (int, float, bool or null) has that type. */
static bool fits(const char *want, const char *text)
{
	struct mvalue v;
	mresolve_text(text, &v);
	if (strcmp(want, "int") == 0)
		return v.type == MSCALAR_INT;
	if (strcmp(want, "float") == 0)
		return v.type == MSCALAR_FLOAT || v.type == MSCALAR_INT;
	if (strcmp(want, "bool") == 0)
		return v.type == MSCALAR_BOOL;
	return v.type == MSCALAR_NULL;
}

/*
 * An explicit TAG on a node of KIND ("scalar", "list", "map"; TEXT the scalar's): only "!" and the core
 * schema's tags, each on the kind of node it names. !!binary, !!timestamp, !!set and custom tags would
 * be read as plain strings or maps and lose their meaning, so they are refused.
 */
static int check_tag(struct mparser *p, yaml_mark_t at, const char *tag, const char *kind, const char *text)
{
	static const char *const scalars[] = {"str", "int", "float", "bool", "null", NULL};
	if (tag == NULL || strcmp(tag, "!") == 0)
		return 0;
	const char *name =
	    strncmp(tag, CORE_PREFIX, strlen(CORE_PREFIX)) == 0 ? tag + strlen(CORE_PREFIX) : NULL;
	bool known = false, scalar = false;
	for (const char *const *s = scalars; name && *s; s++)
		scalar = known |= strcmp(name, *s) == 0;
	known |= name && (strcmp(name, "seq") == 0 || strcmp(name, "map") == 0);
	if (!known)
		return mfail_at(
		    p, at,
		    "tag '%s' is not supported (only !!str, !!int, !!float, !!bool, !!null, !!seq and "
		    "!!map)",
		    tag_text(tag).s);
	bool ok = scalar ? strcmp(kind, "scalar") == 0
	                 : strcmp(kind, strcmp(name, "seq") == 0 ? "list" : "map") == 0;
	if (!ok)
		return mfail_at(p, at, "tag '%s' does not fit a %s", tag_text(tag).s, kind);
	if (strcmp(name, "str") != 0 && scalar && !fits(name, text))
		return mfail_at(p, at, "tag '%s' does not fit the value '%s'", tag_text(tag).s,
		                mquote(text).s);
	return 0;
}

/* Check one event; DEPTH counts the lists and maps open around it. */
static int check_event(struct mparser *p, const yaml_event_t *ev, int *depth)
{
	switch (ev->type) {
	case YAML_DOCUMENT_START_EVENT:
		return check_directives(p, ev);
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT: {
		bool seq = ev->type == YAML_SEQUENCE_START_EVENT;
		if (++*depth > MANIFEST_MAX_DEPTH)
			return mfail_at(p, ev->start_mark, "nested more than %d levels deep",
			                MANIFEST_MAX_DEPTH);
		const yaml_char_t *tag = seq ? ev->data.sequence_start.tag : ev->data.mapping_start.tag;
		return check_tag(p, ev->start_mark, (const char *)tag, seq ? "list" : "map", NULL);
	}
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		--*depth;
		return 0;
	case YAML_SCALAR_EVENT:
		return check_tag(p, ev->start_mark, (const char *)ev->data.scalar.tag, "scalar",
		                 (const char *)ev->data.scalar.value);
	default:
		return 0;
	}
}

int mscan(struct mparser *p)
{
	int rc = check_encoding(p);
	if (rc < 0)
		return rc;
	yaml_parser_t y;
	if (!yaml_parser_initialize(&y))
		return kiln_error_set(p->err, KILN_EFAIL, "out of memory");
	yaml_parser_set_input_string(&y, (const unsigned char *)p->text, p->len);
	yaml_parser_set_encoding(&y, YAML_UTF8_ENCODING);
	/* Nesting is checked as the events come: libyaml's scanner slows down with each level open. */
	int depth = 0;
	for (bool end = false; !end && rc == 0;) {
		yaml_event_t ev;
		if (!yaml_parser_parse(&y, &ev)) {
			rc = mfail_syntax(p, &y);
			break;
		}
		rc = check_event(p, &ev, &depth);
		end = ev.type == YAML_DOCUMENT_END_EVENT || ev.type == YAML_STREAM_END_EVENT;
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&y);
	return rc;
}
