/* SPDX-License-Identifier: Apache-2.0 */
/*
 * manifest_yaml.h: private to pkg/manifest*.c. The walk over a libyaml document that the manifest
 * schema is checked with: positioned errors, scalar typing, and conversion of free-form nodes to JSON.
 */
#ifndef KILN_MANIFEST_YAML_H
#define KILN_MANIFEST_YAML_H

#include <stdbool.h>
#include <yaml.h>

#include "pkg/manifest.h"

/* Deepest nesting of lists and maps, in the file and in what aliases expand to; deeper input is refused. */
#define MANIFEST_MAX_DEPTH 64

/* Longest value quoted in a message, in bytes; longer ones are cut (on a character boundary) with "...". */
#define MANIFEST_QUOTE_MAX 60

/* Longest key path kept for messages ("build.run[3].mounts[0].target"); longer ones are cut. */
#define MANIFEST_WHERE_MAX 256

/* The state of one manifest walk. */
struct mparser {
	struct kiln_manifest *m; /* what is being filled in; m->path names the file in messages */
	yaml_document_t *doc;    /* the loaded document */
	struct kiln_error **err; /* where the first error goes */
	long budget;             /* nodes the walk may still visit, aliases counted at each use */
	size_t text_budget;      /* bytes of scalar text the walk may still visit, likewise */
	yaml_node_t *predictor;  /* the key node of 'run' or 'predict', once seen */
	const char *text;        /* the manifest's bytes, NUL-terminated */
	size_t len;              /* and their number */
	size_t *lines;           /* the byte offset where each line of text starts */
	size_t nlines;
};

/* A value as a message quotes it: mquote(text).s, valid until the end of the full expression. */
struct mquote {
	char s[MANIFEST_QUOTE_MAX + 4];
};

/* TEXT cut to MANIFEST_QUOTE_MAX bytes, never in the middle of a UTF-8 character, with "..." when cut. */
struct mquote mquote(const char *text);

/* The length of the longest prefix of TEXT (LEN bytes of UTF-8) of at most MAX bytes that ends on a
 * character boundary. */
size_t mutf8_prefix(const char *text, size_t len, size_t max);

/*
 * The first pass over the manifest's text (manifest_scan.c), before it is loaded: UTF-8 only, no
 * directive but '%YAML 1.2', no tag but the core schema's (each fitting its value), nesting at most
 * MANIFEST_MAX_DEPTH deep. Stops at the end of the first document. Needs mset_text. Returns 0 or
 * KILN_EINVAL with a positioned message.
 */
int mscan(struct mparser *p);

/* What a scalar means under YAML 1.2's core schema. */
enum mscalar {
	MSCALAR_STRING,
	MSCALAR_NULL,
	MSCALAR_BOOL,
	MSCALAR_INT,
	MSCALAR_FLOAT,
};

struct mvalue {
	enum mscalar type;
	bool b;
	long long i;
	double d;
};

/*
 * Set *p->err to KILN_EINVAL with "PATH:LINE:COLUMN: message" (LINE and COLUMN 1-based) and return
 * KILN_EINVAL. mfail_at takes a libyaml mark (0-based), mfail a node (its start).
 */
int mfail_at(struct mparser *p, yaml_mark_t mark, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#define mfail(p, node, ...) mfail_at((p), (node)->start_mark, __VA_ARGS__)

/*
 * Add "PATH:LINE:COLUMN: message" (the node's start) to p->m->warnings: a key kiln accepts and does not act
 * on. Returns 0, or KILN_EFAIL when memory runs out.
 */
int mwarn(struct mparser *p, yaml_node_t *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* "WHERE: expected WANT, got 'text'" (or "got a list", "got a map", "got an empty value"). */
int mfail_type(struct mparser *p, yaml_node_t *n, const char *where, const char *want);

/* Turn libyaml's last parser error into a positioned "syntax error: ..." message. */
int mfail_syntax(struct mparser *p, yaml_parser_t *y);

/* Keep TEXT (LEN bytes, NUL-terminated) in p and index its lines; mrelease_text frees the index. */
int mset_text(struct mparser *p, const char *text, size_t len);
void mrelease_text(struct mparser *p);

/* The bytes of the manifest at MARK (libyaml counts columns in characters, not bytes). */
const char *msource(struct mparser *p, yaml_mark_t mark);

/*
 * libyaml gives "!!str 12" and "12" the same tag, so tell them apart by the source text: a plain scalar
 * written with an explicit tag ("!!str", "!") gets YAML_ANY_SCALAR_STYLE, which mresolve types as a string.
 */
void mmark_tagged(struct mparser *p);

/*
 * Count the node N (WHERE is its key path) against the document's budget: every node the walk visits
 * counts, an aliased node each time it is used, and so does the text of each scalar. Returns 0, or
 * KILN_EINVAL with a positioned message once the budget is spent (an alias bomb).
 */
int mvisit(struct mparser *p, yaml_node_t *n, const char *where);

/* The node with index I of the document (never NULL for indexes libyaml handed out). */
yaml_node_t *mnode(struct mparser *p, int i);

/* A scalar's text as written (NUL-terminated; libyaml does not allow NUL inside). */
static inline const char *mtext(yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

/*
 * Type a scalar: plain untagged scalars by their text, quoted, block and !!str-tagged ones are strings,
 * the core tags (!!int, !!float, !!bool, !!null) type the text.
 */
void mresolve(yaml_node_t *n, struct mvalue *out);

/* Type TEXT as a plain scalar of YAML 1.2's core schema. */
void mresolve_text(const char *text, struct mvalue *out);

/* Whether a plain scalar is a YAML 1.1 boolean (yes/no/on/off) as Cog's YAML reader takes them. */
bool mresolve_bool11(yaml_node_t *n, bool *out);

/* Write "PARENT.KEY" (or "KEY" at the top) or "PARENT[I]" into buf. */
void mwhere_key(char *buf, const char *parent, const char *key);
void mwhere_index(char *buf, const char *parent, size_t i);

/* The value node of KEY in the mapping N, or NULL. */
yaml_node_t *mmap_get(struct mparser *p, yaml_node_t *n, const char *key);

/*
 * Check the key of PAIR in the mapping N: counted by mvisit, a scalar, not set by an earlier pair (WHERE
 * names the map, "" at the top). SEEN is the JSON object of the pairs before PAIR, keyed by their names
 * (found in constant time). Returns 0 or KILN_EINVAL. The caller looks the key up in its own schema.
 */
int mcheck_key(struct mparser *p, yaml_node_t *n, yaml_node_pair_t *pair, const char *where, json_t *seen);

/* The position of a node, 1-based. */
static inline struct kiln_pos mpos(yaml_node_t *n)
{
	return (struct kiln_pos){(int)n->start_mark.line + 1, (int)n->start_mark.column + 1};
}

/*
 * Checks beyond types (manifest_check.c), run once a value is stored in p->m; VAL is its node, WHERE its
 * key path. Each returns 0 or KILN_EINVAL with a positioned message.
 */
/* REF is "FILE.py:NAME" or "native:PATH", and the file is a regular file inside the project. */
int mcheck_program(struct mparser *p, yaml_node_t *val, const char *where, const char *ref);
int mcheck_train(struct mparser *p, yaml_node_t *val, const char *where);
/* build.python_overrides exists (relative to the project directory, or absolute). */
int mcheck_overrides(struct mparser *p, yaml_node_t *val, const char *where);
/* build.python_requirements exists (relative to the project directory, or absolute). */
int mcheck_requirements(struct mparser *p, yaml_node_t *val, const char *where);
/* Each item is NAME=value with a valid NAME, set once, not reserved by the runtime. */
int mcheck_environment(struct mparser *p, yaml_node_t *val, const char *where);
/* build.environment: the same rules, for p->m->build_environment. */
int mcheck_build_environment(struct mparser *p, yaml_node_t *val, const char *where);
int mcheck_base(struct mparser *p, yaml_node_t *val, const char *where);
/* image: an OCI reference (kiln_reference_parse's rules and length bound). */
int mcheck_image(struct mparser *p, yaml_node_t *val, const char *where);
/* Patterns are not empty, not absolute and have no ".." component. */
int mcheck_weights(struct mparser *p, yaml_node_t *val, const char *where);
int mcheck_prefetch(struct mparser *p, yaml_node_t *val, const char *where);
/* serve.weights: "image" or "registry". */
int mcheck_weights_mode(struct mparser *p, yaml_node_t *val, const char *where);
/* serve.min_instances <= serve.max_instances. */
int mcheck_serve(struct mparser *p, yaml_node_t *val, const char *where);

/* Convert any node to JSON (free-form values such as serve.warmup). */
int mto_json(struct mparser *p, yaml_node_t *n, const char *where, int depth, json_t **out);

#endif
