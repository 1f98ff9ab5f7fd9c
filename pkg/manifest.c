/* SPDX-License-Identifier: Apache-2.0 */
/* manifest.c: load kiln.yaml / cog.yaml, check it against the schema, fill struct kiln_manifest. */
#include "pkg/manifest.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "pkg/manifest_yaml.h"

/* A manifest is a few kilobytes; refuse anything absurd before parsing it. */
#define MANIFEST_MAX_BYTES (4u << 20)
/*
 * How many nodes, and bytes of scalar text, the walk over the whole document may visit, an aliased node
 * counted each time it is used: an alias bomb is refused. Without aliases the text of a manifest always
 * fits, as it is part of the file.
 */
#define MANIFEST_MAX_NODES 100000
#define MANIFEST_MAX_TEXT  MANIFEST_MAX_BYTES

struct field;
/* Parse VAL (the value of KEY; WHERE is its key path) into p->m and *out (its JSON). */
typedef int (*parse_fn)(struct mparser *p, const struct field *f, yaml_node_t *key, yaml_node_t *val,
                        const char *where, json_t **out);
/* Check a value once it is stored; VAL is its node. */
typedef int (*check_fn)(struct mparser *p, yaml_node_t *val, const char *where);

enum field_kind {
	FIELD_BOOL,    /* bool */
	FIELD_STRING,  /* char *; numbers are taken as written */
	FIELD_STRINGS, /* struct kiln_strv; null is an empty list */
	FIELD_COUNT,   /* long, at least field.min */
	FIELD_MAP,     /* a nested map described by field.sub */
	FIELD_CUSTOM,  /* field.parse does everything */
};

/* One key of the schema. */
struct field {
	const char *key;
	enum field_kind kind;
	ptrdiff_t off;           /* where the value goes in struct kiln_manifest; -1: only into the JSON */
	long min;                /* FIELD_COUNT: the smallest value allowed */
	const struct field *sub; /* FIELD_MAP: its keys, ended by a NULL key */
	parse_fn parse;          /* FIELD_CUSTOM */
	check_fn check;          /* run after the value is stored */
	const char *warn;        /* accepted, not acted on: the warning's text, what kiln does instead */
};

#define AT(member) ((ptrdiff_t)offsetof(struct kiln_manifest, member))
#define JSON_ONLY  ((ptrdiff_t)-1)
#define FIELD(name, kind_, off_, ...)                                                                        \
	{                                                                                                    \
		.key = (name), .kind = (kind_), .off = (off_), __VA_ARGS__                                   \
	}

static int parse_build_run(struct mparser *p, const struct field *f, yaml_node_t *key, yaml_node_t *val,
                           const char *where, json_t **out);
static int parse_predictor(struct mparser *p, const struct field *f, yaml_node_t *key, yaml_node_t *val,
                           const char *where, json_t **out);
static int parse_warmup(struct mparser *p, const struct field *f, yaml_node_t *key, yaml_node_t *val,
                        const char *where, json_t **out);
static int check_concurrency(struct mparser *p, yaml_node_t *val, const char *where);
static int parse_weights(struct mparser *p, const struct field *f, yaml_node_t *key, yaml_node_t *val,
                         const char *where, json_t **out);
static int parse_tests(struct mparser *p, const struct field *f, yaml_node_t *key, yaml_node_t *val,
                       const char *where, json_t **out);

/* What kiln does instead of the Cog keys it accepts and does not act on. */
#define WARN_CUDA                                                                                            \
	"kiln installs no CUDA: PyTorch's wheels bring their own, the base is kept (build.gpu sets the "     \
	"NVIDIA variables)"
#define WARN_RECORDED " is recorded in the run.cog.config label only"

/* Where python_version was written: pkg/base.c checks it against Cog's versions and the base's Python. */
static int check_python_version(struct mparser *p, yaml_node_t *val, const char *where)
{
	(void)where;
	p->m->python_version_pos = mpos(val);
	return 0;
}

static const struct field build_fields[] = {
    FIELD("gpu", FIELD_BOOL, AT(gpu)),
    FIELD("cuda", FIELD_STRING, AT(cuda), .warn = WARN_CUDA),
    FIELD("cudnn", FIELD_STRING, AT(cudnn), .warn = WARN_CUDA),
    FIELD("python_version", FIELD_STRING, AT(python_version), .check = check_python_version),
    FIELD("python_requirements", FIELD_STRING, AT(python_requirements), .check = mcheck_requirements),
    FIELD("python_packages", FIELD_STRINGS, AT(python_packages)),
    FIELD("system_packages", FIELD_STRINGS, AT(system_packages)),
    FIELD("run", FIELD_CUSTOM, AT(run_commands), .parse = parse_build_run),
    FIELD("pre_install", FIELD_STRINGS, AT(pre_install)),
    FIELD("environment", FIELD_STRINGS, AT(build_environment), .check = mcheck_build_environment),
    FIELD("sdk_version", FIELD_STRING, JSON_ONLY,
          .warn = "kiln bundles its own cog module; this version is not installed"),
    FIELD("fast", FIELD_BOOL, JSON_ONLY, .warn = "kiln's layering is always on; the key has no effect"),
    FIELD("cog_runtime", FIELD_BOOL, JSON_ONLY,
          .warn = "kiln's own runtime (kiln-shim) serves the model; the key has no effect"),
    FIELD("python_overrides", FIELD_STRING, AT(python_overrides), .check = mcheck_overrides),
    {.key = NULL},
};

static const struct field mount_fields[] = {
    FIELD("type", FIELD_STRING, JSON_ONLY),
    FIELD("id", FIELD_STRING, JSON_ONLY),
    FIELD("target", FIELD_STRING, JSON_ONLY),
    {.key = NULL},
};

static int parse_mounts(struct mparser *p, const struct field *f, yaml_node_t *key, yaml_node_t *val,
                        const char *where, json_t **out);

/* An item of build.run that is a map; its command is read back from the JSON. */
static const struct field run_item_fields[] = {
    FIELD("command", FIELD_STRING, JSON_ONLY),
    FIELD("mounts", FIELD_CUSTOM, JSON_ONLY, .parse = parse_mounts),
    {.key = NULL},
};

static const struct field concurrency_fields[] = {
    FIELD("max", FIELD_COUNT, AT(concurrency_max), .min = 1),
    FIELD("default_target", FIELD_COUNT, AT(concurrency_default_target), .min = 1),
    {.key = NULL},
};

static const struct field serve_fields[] = {
    FIELD("prefetch", FIELD_STRINGS, AT(serve.prefetch), .check = mcheck_prefetch),
    FIELD("min_instances", FIELD_COUNT, AT(serve.min_instances)),
    FIELD("max_instances", FIELD_COUNT, AT(serve.max_instances)),
    FIELD("scaledown_window", FIELD_COUNT, AT(serve.scaledown_window)),
    FIELD("target_concurrency", FIELD_COUNT, AT(serve.target_concurrency)),
    FIELD("warmup", FIELD_CUSTOM, JSON_ONLY, .parse = parse_warmup),
    FIELD("weights", FIELD_STRING, AT(serve.weights), .check = mcheck_weights_mode),
    {.key = NULL},
};

static const struct field top_fields[] = {
    FIELD("build", FIELD_MAP, JSON_ONLY, .sub = build_fields),
    FIELD("run", FIELD_CUSTOM, AT(predict), .parse = parse_predictor),
    FIELD("predict", FIELD_CUSTOM, AT(predict), .parse = parse_predictor,
          .warn = "deprecated: Cog renamed it 'run' (run: FILE.py:NAME); the predictor it names is used"),
    FIELD("train", FIELD_STRING, AT(train), .check = mcheck_train),
    FIELD("image", FIELD_STRING, AT(image), .check = mcheck_image),
    FIELD("concurrency", FIELD_MAP, JSON_ONLY, .sub = concurrency_fields, .check = check_concurrency),
    FIELD("environment", FIELD_STRINGS, AT(environment), .check = mcheck_environment),
    FIELD("base", FIELD_STRING, AT(base), .check = mcheck_base),
    FIELD("weights", FIELD_CUSTOM, AT(weights), .parse = parse_weights, .check = mcheck_weights),
    FIELD("tests", FIELD_CUSTOM, JSON_ONLY, .parse = parse_tests,
          .warn = "kiln does not run Cog's tests; the list" WARN_RECORDED),
    FIELD("model", FIELD_STRING, JSON_ONLY, .warn = "the value" WARN_RECORDED),
    FIELD("serve", FIELD_MAP, JSON_ONLY, .sub = serve_fields, .check = mcheck_serve),
    {.key = NULL},
};

static void *slot(struct mparser *p, const struct field *f)
{
	return f->off < 0 ? NULL : (char *)p->m + f->off;
}

static void strv_release(struct kiln_strv *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	free(s->pos);
	memset(s, 0, sizeof(*s));
}

/* A string value: any scalar that is not null or a boolean, taken as written ("3.10" stays "3.10"). */
static int get_string(struct mparser *p, yaml_node_t *n, const char *where, const char **out)
{
	if (n->type != YAML_SCALAR_NODE)
		return mfail_type(p, n, where, "a string");
	struct mvalue v;
	mresolve(n, &v);
	if (v.type == MSCALAR_NULL || v.type == MSCALAR_BOOL)
		return mfail_type(p, n, where, "a string");
	if (strlen(mtext(n)) != n->data.scalar.length)
		return mfail(p, n, "%s: a NUL character is not allowed", where);
	*out = mtext(n);
	return 0;
}

static int get_strings(struct mparser *p, yaml_node_t *n, const char *where, struct kiln_strv *out,
                       json_t **json)
{
	struct mvalue v;
	if (n->type == YAML_SCALAR_NODE && (mresolve(n, &v), v.type == MSCALAR_NULL)) {
		*json = json_array();
		return 0;
	}
	if (n->type != YAML_SEQUENCE_NODE)
		return mfail_type(p, n, where, "a list of strings");
	size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
	struct kiln_strv s = {calloc(count + 1, sizeof(char *)), calloc(count + 1, sizeof(struct kiln_pos)),
	                      0};
	json_t *arr = json_array();
	if (s.v == NULL || s.pos == NULL || arr == NULL)
		goto nomem;
	for (size_t i = 0; i < count; i++) {
		yaml_node_t *item = mnode(p, n->data.sequence.items.start[i]);
		char sub[MANIFEST_WHERE_MAX];
		const char *text;
		mwhere_index(sub, where, i);
		int rc = mvisit(p, item, sub);
		if (rc == 0)
			rc = get_string(p, item, sub, &text);
		if (rc < 0) {
			strv_release(&s);
			json_decref(arr);
			return rc;
		}
		if ((s.v[i] = strdup(text)) == NULL)
			goto nomem;
		s.pos[i] = mpos(item);
		s.n++;
		json_array_append_new(arr, json_string(text));
	}
	if (out) {
		strv_release(out);
		*out = s;
	} else {
		strv_release(&s);
	}
	*json = arr;
	return 0;
nomem:
	strv_release(&s);
	json_decref(arr);
	return kiln_error_set(p->err, KILN_EFAIL, "out of memory");
}

static int get_count(struct mparser *p, yaml_node_t *n, const char *where, long min, long *out)
{
	const char *want = min > 0 ? "a positive integer" : "a non-negative integer";
	if (n->type != YAML_SCALAR_NODE)
		return mfail_type(p, n, where, want);
	struct mvalue v;
	mresolve(n, &v);
	if (v.type != MSCALAR_INT || v.i < min)
		return mfail_type(p, n, where, want);
	if (v.i > 1000000000LL)
		return mfail(p, n, "%s: %s is too large", where, mtext(n));
	*out = (long)v.i;
	return 0;
}

static int get_bool(struct mparser *p, yaml_node_t *n, const char *where, bool *out)
{
	if (n->type != YAML_SCALAR_NODE)
		return mfail_type(p, n, where, "a boolean");
	struct mvalue v;
	mresolve(n, &v);
	if (v.type == MSCALAR_BOOL) {
		*out = v.b;
		return 0;
	}
	if (mresolve_bool11(n, out))
		return 0;
	return mfail_type(p, n, where, "a boolean");
}

/* Fail when the mapping N (already walked) lacks one of KEYS. */
static int require_keys(struct mparser *p, yaml_node_t *n, const char *where, const char *const *keys)
{
	for (; *keys; keys++)
		if (mmap_get(p, n, *keys) == NULL)
			return mfail(p, n, "%s: missing required key '%s'", where, *keys);
	return 0;
}

static int walk_map(struct mparser *p, yaml_node_t *n, const char *where, const struct field *fields,
                    json_t **out);

static int parse_field(struct mparser *p, const struct field *f, yaml_node_t *key, yaml_node_t *val,
                       const char *where, json_t **out)
{
	void *dst = slot(p, f);
	int rc = mvisit(p, val, where);
	if (rc < 0)
		return rc;
	switch (f->kind) {
	case FIELD_BOOL: {
		bool b;
		if ((rc = get_bool(p, val, where, &b)) < 0)
			return rc;
		if (dst)
			*(bool *)dst = b;
		*out = json_boolean(b);
		break;
	}
	case FIELD_STRING: {
		const char *s;
		if ((rc = get_string(p, val, where, &s)) < 0)
			return rc;
		if (dst) {
			char *copy = strdup(s);
			if (copy == NULL)
				return kiln_error_set(p->err, KILN_EFAIL, "out of memory");
			free(*(char **)dst);
			*(char **)dst = copy;
		}
		*out = json_string(s);
		break;
	}
	case FIELD_STRINGS:
		rc = get_strings(p, val, where, dst, out);
		break;
	case FIELD_COUNT: {
		long v = 0;
		if ((rc = get_count(p, val, where, f->min, &v)) < 0)
			return rc;
		if (dst)
			*(long *)dst = v;
		*out = json_integer(v);
		break;
	}
	case FIELD_MAP:
		rc = walk_map(p, val, where, f->sub, out);
		break;
	case FIELD_CUSTOM:
		rc = f->parse(p, f, key, val, where, out);
		break;
	}
	if (rc < 0)
		return rc;
	return f->check ? f->check(p, val, where) : 0;
}

/* Walk the mapping N against FIELDS: every key known, none twice, each value parsed into *out. */
static int walk_map(struct mparser *p, yaml_node_t *n, const char *where, const struct field *fields,
                    json_t **out)
{
	if (n->type != YAML_MAPPING_NODE)
		return mfail_type(p, n, where, "a map");
	int rc;
	json_t *obj = json_object();
	if (obj == NULL)
		return kiln_error_set(p->err, KILN_EFAIL, "out of memory");
	for (yaml_node_pair_t *pair = n->data.mapping.pairs.start; pair < n->data.mapping.pairs.top; pair++) {
		if ((rc = mcheck_key(p, n, pair, where, obj)) < 0) {
			json_decref(obj);
			return rc;
		}
		yaml_node_t *k = mnode(p, pair->key);
		const char *name = mtext(k);
		const struct field *f = fields;
		while (f->key && strcmp(f->key, name) != 0)
			f++;
		if (f->key == NULL) {
			json_decref(obj);
			if (where[0])
				return mfail(p, k, "unknown key '%s' in '%s'", mquote(name).s, where);
			return mfail(p, k, "unknown key '%s'", mquote(name).s);
		}
		char sub[MANIFEST_WHERE_MAX];
		json_t *val = NULL;
		mwhere_key(sub, where, name);
		if ((rc = parse_field(p, f, k, mnode(p, pair->value), sub, &val)) < 0 ||
		    (f->warn && (rc = mwarn(p, k, "%s: %s", sub, f->warn)) < 0)) {
			json_decref(val);
			json_decref(obj);
			return rc;
		}
		json_object_set_new(obj, name, val ? val : json_null());
	}
	*out = obj;
	return 0;
}

/* build.run[i].mounts: a list of {type: secret, id, target}, as BuildKit's secret mounts. */
static int parse_mounts(struct mparser *p, const struct field *f, yaml_node_t *key, yaml_node_t *val,
                        const char *where, json_t **out)
{
	static const char *const required[] = {"type", "id", "target", NULL};
	char sub[MANIFEST_WHERE_MAX];
	if (val->type != YAML_SEQUENCE_NODE)
		return mfail_type(p, val, where, "a list of mounts");
	json_t *arr = json_array();
	for (yaml_node_item_t *it = val->data.sequence.items.start; it < val->data.sequence.items.top; it++) {
		yaml_node_t *mount = mnode(p, *it);
		json_t *j = NULL;
		mwhere_index(sub, where, (size_t)(it - val->data.sequence.items.start));
		int rc = mvisit(p, mount, sub);
		if (rc == 0)
			rc = walk_map(p, mount, sub, mount_fields, &j);
		if (rc == 0 && (rc = require_keys(p, mount, sub, required)) == 0) {
			const char *type = json_string_value(json_object_get(j, "type"));
			if (strcmp(type, "secret") != 0)
				rc = mfail(p, mmap_get(p, mount, "type"),
				           "%s.type: expected 'secret', got '%s'", sub, mquote(type).s);
		}
		if (rc < 0) {
			json_decref(j);
			json_decref(arr);
			return rc;
		}
		json_array_append_new(arr, j);
	}
	*out = arr;
	return 0;
}

static void steps_release(struct kiln_run_step *steps, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		for (size_t k = 0; k < steps[i].nmounts; k++) {
			free(steps[i].mounts[k].type);
			free(steps[i].mounts[k].id);
			free(steps[i].mounts[k].target);
		}
		free(steps[i].mounts);
		free(steps[i].command);
	}
	free(steps);
}

/* The mounts of the build.run item ITEM (a map, already walked into J) into STEP. */
static int step_mounts(struct mparser *p, yaml_node_t *item, json_t *j, struct kiln_run_step *step)
{
	yaml_node_t *seq = mmap_get(p, item, "mounts");
	json_t *arr = json_object_get(j, "mounts");
	size_t n = json_array_size(arr);
	if (seq == NULL || n == 0)
		return 0;
	if ((step->mounts = calloc(n, sizeof(*step->mounts))) == NULL)
		return kiln_error_set(p->err, KILN_EFAIL, "out of memory");
	for (size_t k = 0; k < n; k++) {
		json_t *mj = json_array_get(arr, k);
		struct kiln_run_mount *mt = &step->mounts[k];
		step->nmounts++;
		mt->type = strdup(json_string_value(json_object_get(mj, "type")));
		mt->id = strdup(json_string_value(json_object_get(mj, "id")));
		mt->target = strdup(json_string_value(json_object_get(mj, "target")));
		mt->pos = mpos(mnode(p, seq->data.sequence.items.start[k]));
		if (mt->type == NULL || mt->id == NULL || mt->target == NULL)
			return kiln_error_set(p->err, KILN_EFAIL, "out of memory");
	}
	return 0;
}

/* build.run: a list of commands, each a string or a map {command, mounts}. */
static int parse_build_run(struct mparser *p, const struct field *f, yaml_node_t *key, yaml_node_t *val,
                           const char *where, json_t **out)
{
	static const char *const required[] = {"command", NULL};
	struct kiln_strv commands = {0};
	struct kiln_run_step *steps = NULL;
	char sub[MANIFEST_WHERE_MAX];
	struct mvalue v;
	int rc;

	if (val->type == YAML_SCALAR_NODE && (mresolve(val, &v), v.type == MSCALAR_NULL)) {
		*out = json_array();
		return 0;
	}
	if (val->type != YAML_SEQUENCE_NODE)
		return mfail_type(p, val, where, "a list of commands");
	size_t count = (size_t)(val->data.sequence.items.top - val->data.sequence.items.start);
	commands.v = calloc(count + 1, sizeof(char *));
	commands.pos = calloc(count + 1, sizeof(struct kiln_pos));
	steps = calloc(count + 1, sizeof(*steps));
	json_t *arr = json_array();
	if (commands.v == NULL || commands.pos == NULL || steps == NULL || arr == NULL) {
		rc = kiln_error_set(p->err, KILN_EFAIL, "out of memory");
		goto fail;
	}
	for (size_t i = 0; i < count; i++) {
		yaml_node_t *item = mnode(p, val->data.sequence.items.start[i]);
		yaml_node_t *cmd_node = item;
		json_t *j = NULL;
		const char *cmd;
		mwhere_index(sub, where, i);
		if ((rc = mvisit(p, item, sub)) < 0)
			goto fail;
		if (item->type == YAML_MAPPING_NODE) {
			if ((rc = walk_map(p, item, sub, run_item_fields, &j)) < 0)
				goto fail;
			json_array_append_new(arr, j);
			if ((rc = require_keys(p, item, sub, required)) < 0)
				goto fail;
			cmd_node = mmap_get(p, item, "command");
			cmd = json_string_value(json_object_get(j, "command"));
			if ((rc = step_mounts(p, item, j, &steps[i])) < 0)
				goto fail;
		} else if (item->type == YAML_SEQUENCE_NODE) {
			rc = mfail_type(p, item, sub, "a command or a map with 'command'");
			goto fail;
		} else {
			if ((rc = get_string(p, item, sub, &cmd)) < 0)
				goto fail;
			json_array_append_new(arr, json_string(cmd));
		}
		if ((commands.v[i] = strdup(cmd)) == NULL) {
			rc = kiln_error_set(p->err, KILN_EFAIL, "out of memory");
			goto fail;
		}
		commands.pos[i] = mpos(cmd_node);
		commands.n++;
		if ((steps[i].command = strdup(cmd)) == NULL) {
			rc = kiln_error_set(p->err, KILN_EFAIL, "out of memory");
			goto fail;
		}
		steps[i].pos = commands.pos[i];
	}
	strv_release(slot(p, f));
	*(struct kiln_strv *)slot(p, f) = commands;
	steps_release(p->m->run_steps, p->m->nrun_steps);
	p->m->run_steps = steps;
	p->m->nrun_steps = count;
	*out = arr;
	return 0;
fail:
	steps_release(steps, count);
	strv_release(&commands);
	json_decref(arr);
	return rc;
}

static const struct field weight_item_fields[] = {
    FIELD("source", FIELD_STRING, JSON_ONLY),
    FIELD("target", FIELD_STRING, JSON_ONLY),
    {.key = NULL},
};

/* The glob a Cog weights entry's SOURCE stands for: a directory is every file under it. */
static char *source_glob(struct mparser *p, const char *source)
{
	_cleanup_free_ char *full = source[0] == '/' ? strdup(source) : kiln_path_join(p->m->dir, source);
	struct stat st;
	size_t n = strlen(source);
	while (n > 1 && source[n - 1] == '/')
		n--;
	if (full != NULL && strpbrk(source, "*?[") == NULL && stat(full, &st) == 0 && S_ISDIR(st.st_mode)) {
		char *g = NULL;
		return asprintf(&g, "%.*s/**", (int)n, source) < 0 ? NULL : g;
	}
	return strndup(source, n);
}

/*
 * weights: kiln's list of globs, and Cog's entries {source, target} (source a file, a directory or a glob,
 * layered as kiln layers weights; target not used: weights stay at their project path under /src).
 */
static int parse_weights(struct mparser *p, const struct field *f, yaml_node_t *key, yaml_node_t *val,
                         const char *where, json_t **out)
{
	static const char *const required[] = {"source", NULL};
	struct mvalue v;
	if (val->type == YAML_SCALAR_NODE && (mresolve(val, &v), v.type == MSCALAR_NULL)) {
		*out = json_array();
		return 0;
	}
	if (val->type != YAML_SEQUENCE_NODE)
		return mfail_type(p, val, where, "a list of globs or of {source, target}");
	size_t count = (size_t)(val->data.sequence.items.top - val->data.sequence.items.start);
	struct kiln_strv s = {calloc(count + 1, sizeof(char *)), calloc(count + 1, sizeof(struct kiln_pos)),
	                      0};
	json_t *arr = json_array();
	int rc = 0;
	if (s.v == NULL || s.pos == NULL || arr == NULL)
		rc = kiln_error_set(p->err, KILN_EFAIL, "out of memory");
	for (size_t i = 0; i < count && rc == 0; i++) {
		yaml_node_t *item = mnode(p, val->data.sequence.items.start[i]);
		char sub[MANIFEST_WHERE_MAX];
		json_t *j = NULL;
		const char *text = NULL;
		mwhere_index(sub, where, i);
		if ((rc = mvisit(p, item, sub)) < 0)
			break;
		if (item->type == YAML_MAPPING_NODE) {
			if ((rc = walk_map(p, item, sub, weight_item_fields, &j)) < 0)
				break;
			json_array_append_new(arr, j);
			if ((rc = require_keys(p, item, sub, required)) < 0)
				break;
			yaml_node_t *src = mmap_get(p, item, "source");
			text = json_string_value(json_object_get(j, "source"));
			s.pos[i] = mpos(src);
			s.v[i] = source_glob(p, text);
			const char *target = json_string_value(json_object_get(j, "target"));
			if (target != NULL)
				rc = mwarn(
				    p, mmap_get(p, item, "target"),
				    "%s.target: not used: kiln keeps weight files at their project path "
				    "under /src ('%s' is layered from there)",
				    sub, mquote(text).s);
		} else if (item->type == YAML_SEQUENCE_NODE) {
			rc = mfail_type(p, item, sub, "a glob or a map with 'source'");
			break;
		} else {
			if ((rc = get_string(p, item, sub, &text)) < 0)
				break;
			json_array_append_new(arr, json_string(text));
			s.pos[i] = mpos(item);
			s.v[i] = strdup(text);
		}
		if (s.v[i] == NULL)
			rc = kiln_error_set(p->err, KILN_EFAIL, "out of memory");
		else
			s.n++;
	}
	if (rc < 0) {
		strv_release(&s);
		json_decref(arr);
		return rc;
	}
	strv_release(slot(p, f));
	*(struct kiln_strv *)slot(p, f) = s;
	*out = arr;
	return 0;
}

/* tests: Cog's list of test cases (maps, free-form), or null. */
static int parse_tests(struct mparser *p, const struct field *f, yaml_node_t *key, yaml_node_t *val,
                       const char *where, json_t **out)
{
	struct mvalue v;
	if (val->type == YAML_SCALAR_NODE && (mresolve(val, &v), v.type == MSCALAR_NULL)) {
		*out = json_array();
		return 0;
	}
	if (val->type != YAML_SEQUENCE_NODE)
		return mfail_type(p, val, where, "a list of test cases");
	for (yaml_node_item_t *it = val->data.sequence.items.start; it < val->data.sequence.items.top; it++) {
		yaml_node_t *item = mnode(p, *it);
		if (item->type != YAML_MAPPING_NODE) {
			char sub[MANIFEST_WHERE_MAX];
			mwhere_index(sub, where, (size_t)(it - val->data.sequence.items.start));
			return mfail_type(p, item, sub, "a map");
		}
	}
	return mto_json(p, val, where, 0, out);
}

/* run, or its older name predict: only one of the two. */
static int parse_predictor(struct mparser *p, const struct field *f, yaml_node_t *key, yaml_node_t *val,
                           const char *where, json_t **out)
{
	if (p->predictor)
		return mfail(p, key, "'%s' and '%s' are both set ('predict' is the older name of 'run')",
		             mtext(p->predictor), mtext(key));
	p->predictor = key;
	int rc = parse_field(p, &(struct field)FIELD(f->key, FIELD_STRING, f->off), key, val, where, out);
	if (rc < 0)
		return rc;
	p->m->predict_pos = mpos(val);
	return mcheck_program(p, val, where, p->m->predict);
}

static int parse_warmup(struct mparser *p, const struct field *f, yaml_node_t *key, yaml_node_t *val,
                        const char *where, json_t **out)
{
	if (val->type != YAML_MAPPING_NODE)
		return mfail_type(p, val, where, "a map of inputs");
	json_t *j = NULL;
	int rc = mto_json(p, val, where, 0, &j);
	if (rc < 0)
		return rc;
	json_decref(p->m->serve.warmup);
	p->m->serve.warmup = json_incref(j);
	*out = j;
	return 0;
}

static int check_concurrency(struct mparser *p, yaml_node_t *val, const char *where)
{
	static const char *const required[] = {"max", NULL};
	return require_keys(p, val, where, required);
}

/* Cog's concurrency.default_target is the autoscaler's target: serve.target_concurrency (the warm-pool hint
 * kiln deploy maps to Knative's and KServe's target) where that is not set. */
static int apply_default_target(struct mparser *p, yaml_node_t *root)
{
	long t = p->m->concurrency_default_target, max = p->m->concurrency_max,
	     own = p->m->serve.target_concurrency;
	if (t <= 0)
		return 0;
	yaml_node_t *n = mmap_get(p, mmap_get(p, root, "concurrency"), "default_target");
	int rc = 0;
	if (max > 0 && t > max)
		rc =
		    mwarn(p, n,
		          "concurrency.default_target: %ld is above concurrency.max (%ld): an instance never "
		          "takes more than %ld at once, so the autoscaler's target is %ld in effect",
		          t, max, max, max);
	if (rc == 0 && own >= 0 && own != t)
		rc = mwarn(
		    p, n,
		    "concurrency.default_target: %ld is not used: serve.target_concurrency (%ld) is the "
		    "autoscaler's target",
		    t, own);
	if (own < 0)
		p->m->serve.target_concurrency = t;
	return rc;
}

/* An overrides file changes what pip resolves; with nothing for pip to install it does nothing. */
static int check_overrides(struct mparser *p, yaml_node_t *root)
{
	if (p->m->python_overrides == NULL || p->m->python_requirements || p->m->python_packages.n)
		return 0;
	return mwarn(p, mmap_get(p, mmap_get(p, root, "build"), "python_overrides"),
	             "build.python_overrides: not used: there is no python_requirements (or python_packages) "
	             "for it to override");
}

static void manifest_init(struct kiln_manifest *m)
{
	m->concurrency_max = 0;
	m->serve.min_instances = -1;
	m->serve.max_instances = -1;
	m->serve.scaledown_window = -1;
	m->serve.target_concurrency = -1;
}

static bool is_cog_name(const char *path)
{
	const char *slash = strrchr(path, '/');
	return strcmp(slash ? slash + 1 : path, "cog.yaml") == 0;
}

/* Load the one document of TEXT and walk it into p->m. */
static int parse_text(struct mparser *p, const char *text, size_t len)
{
	yaml_parser_t y;
	yaml_document_t doc, next;
	int rc = 0;
	if (!yaml_parser_initialize(&y))
		return kiln_error_set(p->err, KILN_EFAIL, "out of memory");
	yaml_parser_set_input_string(&y, (const unsigned char *)text, len);
	yaml_parser_set_encoding(&y, YAML_UTF8_ENCODING);
	if ((rc = mset_text(p, text, len)) < 0 || (rc = mscan(p)) < 0) {
		mrelease_text(p);
		yaml_parser_delete(&y);
		return rc;
	}
	if (!yaml_parser_load(&y, &doc)) {
		rc = mfail_syntax(p, &y);
		mrelease_text(p);
		yaml_parser_delete(&y);
		return rc;
	}
	p->doc = &doc;
	mmark_tagged(p);
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	if (root == NULL) {
		rc = mfail_at(p, doc.start_mark, "the manifest is empty");
		goto out;
	}
	/* A second document is a mistake (a stray "---"), not something to ignore. */
	if (!yaml_parser_load(&y, &next)) {
		rc = mfail_syntax(p, &y);
		goto out;
	}
	yaml_node_t *second = yaml_document_get_root_node(&next);
	if (second) {
		rc = mfail_at(p, next.start_mark, "expected one YAML document, found a second one");
		yaml_document_delete(&next);
		goto out;
	}
	yaml_document_delete(&next);
	if (root->type != YAML_MAPPING_NODE) {
		rc = mfail_type(p, root, "top level", "a map");
		goto out;
	}
	if ((rc = walk_map(p, root, "", top_fields, &p->m->json)) < 0 ||
	    (rc = apply_default_target(p, root)) < 0 || (rc = check_overrides(p, root)) < 0)
		goto out;
	if (p->predictor == NULL)
		rc = mfail(p, root, "missing required key 'run'");
out:
	p->doc = NULL;
	mrelease_text(p);
	yaml_document_delete(&doc);
	yaml_parser_delete(&y);
	return rc;
}

int kiln_manifest_parse(struct kiln_manifest **out, const char *path, const char *dir,
                        struct kiln_error **err)
{
	struct kiln_manifest *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	manifest_init(m);
	m->path = strdup(path);
	m->dir = strdup(dir ? dir : ".");
	m->is_cog = is_cog_name(path);
	if (m->path == NULL || m->dir == NULL) {
		kiln_manifest_free(m);
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	int rc = kiln_read_file(&text, &len, path, MANIFEST_MAX_BYTES, err);
	if (rc == 0) {
		struct mparser p = {
		    .m = m, .err = err, .budget = MANIFEST_MAX_NODES, .text_budget = MANIFEST_MAX_TEXT};
		rc = parse_text(&p, text, len);
	}
	if (rc < 0) {
		kiln_manifest_free(m);
		return rc;
	}
	*out = m;
	return 0;
}

/* Whether PATH exists (0), does not (KILN_ENOTFOUND), or cannot be looked at (error set). */
static int probe(const char *path, struct kiln_error **err)
{
	struct stat st;
	if (stat(path, &st) == 0)
		return 0;
	if (errno == ENOENT || errno == ENOTDIR)
		return KILN_ENOTFOUND;
	return kiln_error_errno(err, errno, "cannot open '%s'", path);
}

int kiln_manifest_load(struct kiln_manifest **out, const char *dir, const char *file, struct kiln_error **err)
{
	if (dir == NULL)
		dir = ".";
	if (file)
		return kiln_manifest_parse(out, file, dir, err);
	static const char *const names[] = {"kiln.yaml", "cog.yaml"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		/* "kiln.yaml" rather than "./kiln.yaml": messages then read as the user would write them. */
		_cleanup_free_ char *path =
		    strcmp(dir, ".") == 0 ? strdup(names[i]) : kiln_path_join(dir, names[i]);
		if (path == NULL)
			return kiln_error_set(err, KILN_EFAIL, "out of memory");
		int rc = probe(path, err);
		if (rc == 0)
			return kiln_manifest_parse(out, path, dir, err);
		if (rc != KILN_ENOTFOUND)
			return rc;
	}
	return kiln_error_set(err, KILN_ENOTFOUND, "no kiln.yaml or cog.yaml in '%s'", dir);
}

void kiln_manifest_free(struct kiln_manifest *m)
{
	if (m == NULL)
		return;
	free(m->path);
	free(m->dir);
	free(m->cuda);
	free(m->cudnn);
	free(m->python_version);
	free(m->python_requirements);
	free(m->python_overrides);
	strv_release(&m->python_packages);
	strv_release(&m->system_packages);
	strv_release(&m->run_commands);
	steps_release(m->run_steps, m->nrun_steps);
	strv_release(&m->build_environment);
	strv_release(&m->warnings);
	strv_release(&m->pre_install);
	free(m->predict);
	free(m->train);
	free(m->image);
	strv_release(&m->environment);
	free(m->base);
	strv_release(&m->weights);
	strv_release(&m->serve.prefetch);
	json_decref(m->serve.warmup);
	free(m->serve.weights);
	json_decref(m->json);
	free(m);
}
