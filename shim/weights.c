/* SPDX-License-Identifier: Apache-2.0 */
/* weights.c: an image's registry weights fetched into the node's cache at start (weights.h). */
#include "shim/weights.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "pkg/weights_cache.h"
#include "registry/client.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_LIST     "/.kiln/weights.json"
#define DEFAULT_DIR      "/var/lib/kiln/weights"
#define DEFAULT_PARALLEL 3

struct shim_weights {
	json_t *list; /* [{"path", "digest", "size"}] */
	struct kiln_weight_blob *blobs;
	size_t n;
	uint64_t bytes;
	char *dir, *source;
	size_t parallel;
	struct kiln_weights_progress progress;
	struct timespec start;
	_Atomic long long end_ns; /* 0 while fetching */
	_Atomic int state;
	char *error;
	bool thread_started;
	pthread_t thread;
	volatile sig_atomic_t cancel;
};

static long long since_ns(const struct timespec *t0)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long long)(now.tv_sec - t0->tv_sec) * 1000000000LL + (now.tv_nsec - t0->tv_nsec);
}

static void finish(struct shim_weights *w, enum shim_weights_state st, char *error)
{
	w->error = error;
	long long ns = since_ns(&w->start);
	atomic_store(&w->end_ns, ns > 0 ? ns : 1);
	atomic_store(&w->state, (int)st);
}

/* Each weight file's path in the image leads to its blob, whole (the cache is where the links point). */
static char *check_links(struct shim_weights *w)
{
	for (size_t i = 0; i < w->n; i++) {
		const char *path = w->blobs[i].name;
		struct stat st;
		char *msg = NULL;
		errno = 0;
		if (stat(path, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != w->blobs[i].size) {
			if (asprintf(
			        &msg,
			        "%s does not lead to its weights in the cache '%s' (%s): the image's links "
			        "point into " DEFAULT_DIR ", mount the cache there",
			        path, w->dir, errno ? strerror(errno) : "wrong size") < 0)
				msg = NULL;
			return msg ? msg : strdup("out of memory");
		}
	}
	return NULL;
}

static void *fetch_thread(void *arg)
{
	struct shim_weights *w = arg;
	struct kiln_error *err = NULL;
	struct kiln_registry *r = NULL;
	_cleanup_free_ char *host = strdup(w->source);
	char *slash = host ? strchr(host, '/') : NULL;
	if (slash == NULL) {
		char *msg = NULL;
		if (asprintf(&msg, "KILN_WEIGHTS_SOURCE='%s' is not HOST/REPOSITORY", w->source) < 0)
			msg = NULL;
		finish(w, SHIM_WEIGHTS_FAILED, msg);
		return NULL;
	}
	*slash = '\0';
	struct kiln_registry_options opt;
	kiln_registry_options_init(&opt);
	opt.cancel = &w->cancel;
	int rc = kiln_registry_open(&r, host, &opt, &err);
	if (rc == 0)
		rc = kiln_weights_fill(w->dir, r, slash + 1, w->blobs, w->n, w->parallel, &w->progress, &err);
	kiln_registry_free(r);
	if (rc < 0) {
		char *msg = NULL;
		if (asprintf(&msg, "cannot fetch the weights from %s: %s", w->source, err->message) < 0)
			msg = NULL;
		kiln_error_free(err);
		finish(w, SHIM_WEIGHTS_FAILED, msg ? msg : strdup("cannot fetch the weights"));
		return NULL;
	}
	char *bad = check_links(w);
	finish(w, bad ? SHIM_WEIGHTS_FAILED : SHIM_WEIGHTS_DONE, bad);
	return NULL;
}

/* Read and check the list at PATH into W. */
static int read_list(struct shim_weights *w, const char *path, struct kiln_error **err)
{
	json_error_t je;
	w->list = json_load_file(path, 0, &je);
	if (w->list == NULL)
		return kiln_error_set(err, KILN_EINVAL, "%s: not a list of weights (%s)", path, je.text);
	return kiln_weights_list_blobs(w->list, path, &w->blobs, &w->n, &w->bytes, err);
}

int shim_weights_start(struct shim_weights **out, struct kiln_error **err)
{
	*out = NULL;
	const char *list = getenv("KILN_WEIGHTS_LIST");
	if (list == NULL || *list == '\0')
		list = DEFAULT_LIST;
	if (access(list, F_OK) < 0)
		return 0; /* weights in the image */
	struct shim_weights *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	clock_gettime(CLOCK_MONOTONIC, &w->start);
	uint64_t parallel = DEFAULT_PARALLEL;
	const char *dir = getenv("KILN_WEIGHTS_DIR");
	const char *source = getenv("KILN_WEIGHTS_SOURCE");
	w->dir = strdup(dir && *dir ? dir : DEFAULT_DIR);
	w->source = strdup(source ? source : "");
	if (!w->dir || !w->source || read_list(w, list, err) < 0 ||
	    kiln_env_count("KILN_WEIGHTS_PARALLEL", DEFAULT_PARALLEL, 64, &parallel, err) < 0 ||
	    kiln_weights_progress_init(&w->progress, w->n, err) < 0) {
		shim_weights_free(w);
		return err && *err ? (*err)->code : KILN_EFAIL;
	}
	w->parallel = (size_t)parallel;
	*out = w;
	/* a warm node: everything is there, nothing to fetch */
	bool all = true;
	for (size_t i = 0; i < w->n && all; i++) {
		_cleanup_free_ char *p = kiln_weights_cache_path(w->dir, w->blobs[i].digest);
		struct stat st;
		all =
		    p && stat(p, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == w->blobs[i].size;
		if (all) {
			atomic_store(&w->progress.state[i], KILN_WEIGHT_CACHED);
			atomic_store(&w->progress.done[i], w->blobs[i].size);
		}
	}
	if (all) {
		char *bad = check_links(w);
		finish(w, bad ? SHIM_WEIGHTS_FAILED : SHIM_WEIGHTS_DONE, bad);
		return 0;
	}
	if (*w->source == '\0') {
		char *msg = NULL;
		if (asprintf(&msg,
		             "the image's weights are in a registry and the cache '%s' lacks some: set "
		             "KILN_WEIGHTS_SOURCE to the repository that holds them (HOST/REPOSITORY)",
		             w->dir) < 0)
			msg = NULL;
		finish(w, SHIM_WEIGHTS_FAILED, msg ? msg : strdup("KILN_WEIGHTS_SOURCE is not set"));
		return 0;
	}
	atomic_store(&w->state, SHIM_WEIGHTS_FETCHING);
	int rc = pthread_create(&w->thread, NULL, fetch_thread, w);
	if (rc != 0) {
		finish(w, SHIM_WEIGHTS_FAILED, strdup("cannot start the thread that fetches the weights"));
		return 0;
	}
	w->thread_started = true;
	return 0;
}

enum shim_weights_state shim_weights_state(struct shim_weights *w, const char **message)
{
	enum shim_weights_state st = (enum shim_weights_state)atomic_load(&w->state);
	if (message)
		*message =
		    st == SHIM_WEIGHTS_FAILED ? (w->error ? w->error : "cannot fetch the weights") : NULL;
	return st;
}

json_t *shim_weights_json(struct shim_weights *w)
{
	static const char *const states[] = {"pending", "fetching", "cached", "fetched", "failed"};
	static const char *const names[] = {"fetching", "done", "failed"};
	enum shim_weights_state st = (enum shim_weights_state)atomic_load(&w->state);
	long long end = atomic_load(&w->end_ns);
	double seconds = (double)(end > 0 ? end : since_ns(&w->start)) / 1e9;
	uint64_t done = 0;
	size_t cached = 0;
	json_t *files = json_array();
	for (size_t i = 0; i < w->n; i++) {
		int s = atomic_load(&w->progress.state[i]);
		uint64_t d = atomic_load(&w->progress.done[i]);
		done += d;
		cached += s == KILN_WEIGHT_CACHED;
		json_array_append_new(files, json_pack("{s:s,s:I,s:I,s:s}", "path", w->blobs[i].name, "size",
		                                       (json_int_t)w->blobs[i].size, "done", (json_int_t)d,
		                                       "state", states[s >= 0 && s <= 4 ? s : 0]));
	}
	uint64_t fetched = atomic_load(&w->progress.fetched);
	json_t *o = json_pack("{s:s,s:I,s:I,s:I,s:I,s:f,s:f,s:I,s:s,s:s,s:o}", "state", names[st], "files",
	                      (json_int_t)w->n, "bytes", (json_int_t)w->bytes, "bytes_done", (json_int_t)done,
	                      "bytes_fetched", (json_int_t)fetched, "seconds", seconds, "rate",
	                      seconds > 0 ? (double)fetched / seconds : 0.0, "cached", (json_int_t)cached,
	                      "source", w->source, "dir", w->dir, "per_file", files);
	if (st == SHIM_WEIGHTS_FAILED && w->error)
		json_object_set_new(o, "error", json_string(w->error));
	return o;
}

void shim_weights_free(struct shim_weights *w)
{
	if (w == NULL)
		return;
	w->cancel = 1;
	if (w->thread_started)
		pthread_join(w->thread, NULL);
	kiln_weights_progress_release(&w->progress);
	free(w->blobs);
	json_decref(w->list);
	free(w->dir);
	free(w->source);
	free(w->error);
	free(w);
}
