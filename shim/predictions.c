/* SPDX-License-Identifier: Apache-2.0 */
/* predictions.c: the table of jobs (table.h): states, slots, worker events and webhooks. */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/fs.h"
#include "shim/table.h"

/* Per kind of job: the worker request that runs it, the word its log lines use and their key for its id. */
static const struct {
	const char *request, *noun, *id_key;
} KINDS[] = {
    [SHIM_JOB_PREDICTION] = {"predict", "prediction", "prediction_id"},
    [SHIM_JOB_TRAINING] = {"train", "training", "training_id"},
};

const char *shim_job_noun(enum shim_job_kind kind)
{
	return KINDS[kind].noun;
}

const char *shim_job_id_key(enum shim_job_kind kind)
{
	return KINDS[kind].id_key;
}

static bool finished(const struct shim_job *p)
{
	return p->status >= JOB_SUCCEEDED;
}

struct shim_job *shim_job_find(struct shim *s, const char *id)
{
	for (struct shim_job *p = s->jobs; p; p = p->next)
		if (strcmp(p->id, id) == 0)
			return p;
	return NULL;
}

/* A random 32-hex-digit id, as Cog's uuid4().hex. */
static char *new_id(void)
{
	static const char HEX[] = "0123456789abcdef";
	/* the kernel's random bytes for 32 ids at a time, per thread: one getrandom(2) per 32 predictions */
	static __thread unsigned char pool[512];
	static __thread size_t used = sizeof(pool);
	if (used == sizeof(pool)) {
		if (getrandom(pool, sizeof(pool), 0) != (ssize_t)sizeof(pool))
			for (size_t i = 0; i < sizeof(pool); i++)
				pool[i] = (unsigned char)rand();
		used = 0;
	}
	unsigned char r[16];
	memcpy(r, pool + used, sizeof(r));
	memset(pool + used, 0, sizeof(r)); /* an id's bytes are not kept where a later id could repeat them */
	used += sizeof(r);
	char *id = malloc(33);
	if (!id)
		abort();
	for (size_t i = 0; i < sizeof(r); i++) {
		id[2 * i] = HEX[r[i] >> 4];
		id[2 * i + 1] = HEX[r[i] & 15];
	}
	id[32] = '\0';
	return id;
}

struct shim_job *shim_job_new(struct shim *s, enum shim_job_kind kind, const char *id, json_t *body,
                              json_t *input)
{
	struct shim_job *p = calloc(1, sizeof(*p));
	if (!p)
		abort();
	p->kind = kind;
	p->id = id ? strdup(id) : new_id();
	p->body = json_incref(body);
	p->input = json_incref(input);
	p->status = JOB_STARTING;
	p->predict_time = -1;
	shim_now(p->created_at);
	const char *hook = json_string_value(json_object_get(body, "webhook"));
	p->webhook = hook && *hook ? strdup(hook) : NULL;
	json_t *filter = json_object_get(body, "webhook_events_filter");
	p->filter = json_is_array(filter) ? json_incref(filter) : NULL;
	const char *prefix = json_string_value(json_object_get(body, "output_file_prefix"));
	if (prefix && *prefix)
		p->upload_url = strdup(prefix);
	else if (s->upload_url)
		p->upload_url = strdup(s->upload_url);
	p->refs = 1;
	pthread_cond_init(&p->done, NULL);
	p->counted = true;
	s->busy++;
	p->next = s->jobs;
	s->jobs = p;
	pthread_cond_broadcast(&s->cond);
	return p;
}

static void pred_free(struct shim_job *p)
{
	free(p->id);
	json_decref(p->body);
	json_decref(p->input);
	json_decref(p->output);
	json_decref(p->metrics);
	kiln_buf_release(&p->logs);
	for (size_t i = 0; i < p->nevents; i++)
		json_decref(p->events[i].metric);
	free(p->events);
	free(p->error);
	free(p->webhook);
	json_decref(p->filter);
	free(p->upload_url);
	if (p->tmpdir) {
		kiln_remove_tree(p->tmpdir, NULL);
		free(p->tmpdir);
	}
	pthread_cond_destroy(&p->done);
	free(p);
}

/* Tell the HTTP layer that P changed (its waiting connections resume). */
static void changed(struct shim *s, struct shim_job *p)
{
	if (s->job_changed)
		s->job_changed(s, p);
}

/* Queue webhook EVENT for P when it has a webhook (never blocks: the webhook thread sends). */
static void notify(struct shim *s, struct shim_job *p, const char *event)
{
	if (!p->webhook || !s->webhooks)
		return;
	json_t *j = shim_job_json(p);
	shim_webhooks_send(s->webhooks, p->webhook, event, p->filter, j);
	json_decref(j);
}

/* About the bytes V holds in memory: its strings and keys, and a few dozen per value (DEPTH: of V). */
static size_t json_bytes(const json_t *v, int depth)
{
	size_t n = 48;
	if (json_is_string(v)) {
		n += json_string_length(v);
	} else if (json_is_array(v) && depth < 64) {
		size_t i;
		json_t *item;
		json_array_foreach(v, i, item) n += json_bytes(item, depth + 1);
	} else if (json_is_object(v) && depth < 64) {
		const char *key;
		json_t *item;
		json_object_foreach((json_t *)v, key, item) n += strlen(key) + json_bytes(item, depth + 1);
	}
	return v ? n : 0;
}

/* Free P, finished, out of the table at *PP. */
static void drop_done(struct shim *s, struct shim_job **pp)
{
	struct shim_job *p = *pp;
	*pp = p->next;
	s->ndone--;
	s->done_bytes -= p->bytes;
	pred_free(p);
}

/*
 * Keep the newest finished predictions that fit in SHIM_KEEP_DONE and s->keep_bytes; free the other
 * unreferenced ones. From the newest: each is kept while both still fit, so one too large to fit goes
 * before the smaller, older ones. Runs once there are more than SHIM_TRIM_SLACK too many (the walk is then
 * paid once per SHIM_TRIM_SLACK predictions), or more bytes than s->keep_bytes.
 */
static void trim(struct shim *s)
{
	if (s->ndone <= SHIM_KEEP_DONE + SHIM_TRIM_SLACK && s->done_bytes <= s->keep_bytes)
		return;
	size_t kept = 0, bytes = 0;
	for (struct shim_job **pp = &s->jobs; *pp;) {
		struct shim_job *p = *pp;
		if (finished(p)) {
			bool fits = kept < SHIM_KEEP_DONE && bytes + p->bytes <= s->keep_bytes;
			if (!fits && p->refs == 0) {
				drop_done(s, pp);
				continue;
			}
			if (fits) { /* one that does not fit, still referenced, goes at its release */
				kept++;
				bytes += p->bytes;
			}
		}
		pp = &p->next;
	}
}

void shim_job_release(struct shim *s, struct shim_job *p)
{
	p->refs--;
	trim(s);
}

void shim_job_finish(struct shim *s, struct shim_job *p, enum shim_status st, const char *error)
{
	if (finished(p))
		return;
	p->status = st;
	s->ndone++;
	p->bytes = sizeof(*p) + json_bytes(p->body, 0) + json_bytes(p->input, 0) + json_bytes(p->output, 0) +
	           p->logs.len + (p->error ? strlen(p->error) : 0) + p->events_cap * sizeof(*p->events);
	for (size_t i = 0; i < p->nevents; i++)
		p->bytes += json_bytes(p->events[i].metric, 0);
	s->done_bytes += p->bytes;
	if (error && !p->error)
		p->error = strdup(error);
	shim_now(p->completed_at);
	if (!*p->started_at)
		memcpy(p->started_at, p->completed_at, sizeof(p->started_at));
	else if (p->predict_time < 0)
		p->predict_time = shim_since(&p->started_mono);
	if (p->counted) {
		p->counted = false;
		s->busy--;
	}
	if (p->tmpdir) {
		kiln_remove_tree(p->tmpdir, NULL);
		free(p->tmpdir);
		p->tmpdir = NULL;
	}
	notify(s, p, "completed");
	char msg[32], seconds[32];
	snprintf(msg, sizeof(msg), "%s %s", KINDS[p->kind].noun, shim_status_name(st));
	shim_seconds_text(seconds, p->predict_time < 0 ? 0.0 : p->predict_time);
	/* the id as JSON text: a client's id may hold any character (a generated one needs no escape) */
	char idtext[48];
	_cleanup_buf_ struct kiln_buf id = KILN_BUF_INIT;
	const char *qid = shim_quoted(p->id, idtext, sizeof(idtext), &id);
	shim_log_fields("info", msg, "\"%s\":%s,\"status\":\"%s\",\"predict_time\":%s", KINDS[p->kind].id_key,
	                qid, shim_status_name(st), seconds);
	pthread_cond_broadcast(&p->done);
	changed(s, p);
	pthread_cond_broadcast(&s->cond);
	trim(s);
}

void shim_job_dispatch(struct shim *s, struct shim_job *p, json_t *worker_input, bool direct,
                       struct kiln_buf *sent)
{
	pthread_mutex_lock(&s->lock);
	if (p->cancel_requested) {
		shim_job_finish(s, p, JOB_CANCELED, NULL);
		pthread_mutex_unlock(&s->lock);
		return;
	}
	if (s->health == SHIM_DEFUNCT || s->worker_exited) {
		shim_job_finish(s, p, JOB_FAILED, "the worker has exited");
		pthread_mutex_unlock(&s->lock);
		return;
	}
	p->status = JOB_PROCESSING;
	p->dispatched = true;
	shim_now(p->started_at);
	clock_gettime(CLOCK_MONOTONIC, &p->started_mono);
	notify(s, p, "start");
	pthread_cond_broadcast(&s->cond);
	if (sent)
		shim_job_text(p, sent);
	if (direct && !p->webhook) {
		/* P's id stays valid: the caller holds a reference */
		pthread_mutex_unlock(&s->lock);
		/* its "prediction ..." line is written once s->lock is no longer held */
		shim_log_defer(true);
		int rc = shim_worker_run_direct(s, p->id, worker_input);
		shim_log_defer(false);
		if (rc == 0)
			return;
		if (rc < 0) {
			pthread_mutex_lock(&s->lock);
			shim_job_finish(s, p, JOB_FAILED, "the worker has exited");
			pthread_mutex_unlock(&s->lock);
			return;
		}
		pthread_mutex_lock(&s->lock);
	}
	json_t *msg =
	    json_pack("{s:s, s:s, s:O}", "type", KINDS[p->kind].request, "id", p->id, "input", worker_input);
	json_t *context = json_object_get(p->body, "context"); /* current_scope().context */
	if (json_is_object(context))
		json_object_set(msg, "context", context);
	pthread_mutex_unlock(&s->lock);
	int rc = shim_worker_send(s, msg);
	json_decref(msg);
	if (rc < 0) {
		pthread_mutex_lock(&s->lock);
		shim_job_finish(s, p, JOB_FAILED, "the worker has exited");
		pthread_mutex_unlock(&s->lock);
	}
}

/* Add EV to P's events, in order (sse.c streams them): 0, or -1 (EV's metric dropped) when memory runs out.
 */
static int add_event(struct shim_job *p, struct shim_event ev)
{
	if (p->nevents == p->events_cap) {
		size_t cap = p->events_cap ? 2 * p->events_cap : 8;
		struct shim_event *events = realloc(p->events, cap * sizeof(*events));
		if (!events) {
			json_decref(ev.metric);
			return -1;
		}
		p->events = events;
		p->events_cap = cap;
	}
	p->events[p->nevents++] = ev;
	return 0;
}

/* Append TEXT, written to SOURCE ("stdout", "stderr"; NULL: stdout), to P's logs (webhook "logs"). */
static void job_log(struct shim *s, struct shim_job *p, const char *source, const char *text, size_t len)
{
	bool err = source && strcmp(source, "stderr") == 0;
	size_t from = p->logs.len;
	if (kiln_buf_put(&p->logs, text, len) < 0)
		return;
	if (add_event(p, (struct shim_event){
	                     .kind = SHIM_EVENT_LOG, .stderr = err, .from = from, .to = p->logs.len}) < 0) {
		p->logs.len = from; /* a log no stream can tell is not kept either */
		return;
	}
	notify(s, p, "logs");
	changed(s, p);
	pthread_cond_broadcast(&s->cond);
}

/* Turn the file outputs of *V, at the positions FILES (the event's "files"), into data: URIs or uploads,
 * with s->lock released meanwhile. When that fails the prediction fails with the reason (a raw local path
 * is never handed out), and -1 is returned. */
static int encode_output(struct shim *s, struct shim_job *p, json_t **v, const json_t *files)
{
	if (!*v || !files)
		return 0;
	char *url = p->upload_url ? strdup(p->upload_url) : NULL;
	p->refs++;
	pthread_mutex_unlock(&s->lock);
	_cleanup_error_ struct kiln_error *err = NULL;
	int rc = shim_files_encode_output(v, files, url, &err);
	if (rc < 0)
		shim_log("error", json_pack("{s:s}", KINDS[p->kind].id_key, p->id),
		         "cannot encode output: %s", err->message);
	free(url);
	pthread_mutex_lock(&s->lock);
	p->refs--;
	if (rc < 0 && !finished(p)) {
		char msg[512];
		snprintf(msg, sizeof(msg), "cannot deliver the output: %s",
		         err ? err->message : "unknown error");
		shim_job_finish(s, p, JOB_FAILED, msg);
	}
	return rc < 0 ? -1 : 0;
}

/* A job's event from the worker (shim_jobs_ops.event). */
static void on_event(struct shim *s, const char *type, json_t *ev)
{
	const char *id = json_string_value(json_object_get(ev, "id"));
	struct shim_job *p = id ? shim_job_find(s, id) : NULL;
	if (!p || finished(p))
		return;
	json_t *metrics = json_object_get(ev, "metrics"); /* live (a "metrics" event) and with its end */
	if (json_is_object(metrics)) {
		json_decref(p->metrics);
		p->metrics = json_incref(metrics);
	}
	if (strcmp(type, "log") == 0) {
		json_t *text = json_object_get(ev, "text");
		if (!json_is_string(text))
			shim_job_finish(s, p, JOB_FAILED, "the worker sent a log event without text");
		else
			job_log(s, p, json_string_value(json_object_get(ev, "source")),
			        json_string_value(text), json_string_length(text));
	} else if (strcmp(type, "metrics") == 0) {
		/* the predictor's metrics as they stand (taken above): the next response and webhook carry
		 * them; the change that made them, a "metric" event for event streams */
		json_t *change = json_object_get(ev, "change");
		if (change &&
		    !(json_is_object(change) && json_is_string(json_object_get(change, "name")) &&
		      json_is_string(json_object_get(change, "mode")) && json_object_get(change, "value")))
			shim_log("warning", json_pack("{s:s}", KINDS[p->kind].id_key, p->id),
			         "the worker sent a metrics event whose change is not {name, value, mode}: "
			         "event streams do not tell it");
		else if (change)
			add_event(p, (struct shim_event){
			                 .kind = SHIM_EVENT_METRIC,
			                 .metric = json_pack("{s:O, s:O, s:O}", "name",
			                                     json_object_get(change, "name"), "value",
			                                     json_object_get(change, "value"), "mode",
			                                     json_object_get(change, "mode"))});
		changed(s, p);
		pthread_cond_broadcast(&s->cond);
	} else if (strcmp(type, "started") == 0) {
		/* already processing since dispatch */
	} else if (strcmp(type, "output") == 0) {
		json_t *v = json_incref(json_object_get(ev, "value"));
		if (encode_output(s, p, &v, json_object_get(ev, "files")) < 0 || finished(p)) {
			json_decref(v);
			return;
		}
		if (!p->iterator || !json_is_array(p->output)) {
			json_decref(p->output);
			p->output = json_array();
			p->iterator = true;
		}
		json_array_append_new(p->output, v ? v : json_null());
		add_event(p, (struct shim_event){.kind = SHIM_EVENT_OUTPUT,
		                                 .from = json_array_size(p->output) - 1});
		notify(s, p, "output");
		changed(s, p);
		pthread_cond_broadcast(&s->cond);
	} else if (strcmp(type, "done") == 0) {
		json_t *out = json_object_get(ev, "output");
		if (out && !p->iterator) {
			json_t *v = json_incref(out);
			if (encode_output(s, p, &v, json_object_get(ev, "files")) < 0 || finished(p)) {
				json_decref(v);
				return;
			}
			json_decref(p->output);
			p->output = v;
			notify(s, p, "output");
		} else if (!p->output && !p->iterator) {
			p->output = json_null();
		}
		json_t *t = json_object_get(ev, "predict_time");
		if (json_is_number(t))
			p->predict_time = json_number_value(t);
		shim_job_finish(s, p, JOB_SUCCEEDED, NULL);
	} else if (strcmp(type, "failed") == 0) {
		json_t *error = json_object_get(ev, "error");
		/* p->error is a C string: a NUL in the message becomes U+FFFD (the message is kept whole) */
		_cleanup_buf_ struct kiln_buf e = KILN_BUF_INIT;
		for (size_t i = 0; i < json_string_length(error); i++) {
			const char *c = json_string_value(error) + i;
			kiln_buf_put(&e, *c ? c : "\xef\xbf\xbd", *c ? 1 : 3);
		}
		shim_job_finish(s, p, JOB_FAILED, e.ptr ? e.ptr : "prediction failed");
	} else if (strcmp(type, "canceled") == 0) {
		shim_job_finish(s, p, JOB_CANCELED, NULL);
	} else {
		/* an event it cannot act on: the prediction's end may be lost, so this is its end */
		char msg[160];
		snprintf(msg, sizeof(msg), "the worker sent an unknown event '%.64s'", type);
		shim_job_finish(s, p, JOB_FAILED, msg);
	}
}

/* The worker is gone (shim_jobs_ops.fail_all). */
static void on_fail_all(struct shim *s, const char *error, const char *detail)
{
	for (struct shim_job *p = s->jobs; p; p = p->next)
		if (!finished(p)) {
			if (p->logs.len && p->logs.ptr[p->logs.len - 1] != '\n')
				job_log(s, p, "stderr", "\n", 1);
			job_log(s, p, "stderr", detail, strlen(detail));
			job_log(s, p, "stderr", "\n", 1);
			shim_job_finish(s, p, JOB_FAILED, error);
		}
}

/* shim_jobs_ops.which: job ID, or the only one running (sent to the worker and not finished). */
static const char *on_which(struct shim *s, const char *id)
{
	if (id) {
		struct shim_job *p = shim_job_find(s, id);
		return p ? p->id : NULL;
	}
	struct shim_job *only = NULL;
	int running = 0;
	for (struct shim_job *p = s->jobs; p; p = p->next)
		if (p->status == JOB_PROCESSING && p->dispatched && running++ == 0)
			only = p;
	return running == 1 ? only->id : NULL;
}

/* shim_jobs_ops.log */
static void on_log(struct shim *s, const char *id, const char *source, const char *text, size_t len)
{
	struct shim_job *p = shim_job_find(s, id);
	if (p)
		job_log(s, p, source, text, len);
}

/* shim_jobs_ops.fail */
static void on_fail(struct shim *s, const char *id, const char *error)
{
	struct shim_job *p = shim_job_find(s, id);
	if (p && !finished(p))
		shim_job_finish(s, p, JOB_FAILED, error);
}

static const struct shim_jobs_ops TABLE_OPS = {
    .event = on_event,
    .which = on_which,
    .log = on_log,
    .fail = on_fail,
    .fail_all = on_fail_all,
};

void shim_table_attach(struct shim *s)
{
	s->job_ops = &TABLE_OPS;
}

int shim_job_cancel(struct shim *s, struct shim_job *p)
{
	if (finished(p))
		return -1;
	p->cancel_requested = true;
	if (!p->dispatched)
		return 0; /* dispatch sees the flag */
	json_t *msg = json_pack("{s:s, s:s}", "type", "cancel", "id", p->id);
	pthread_mutex_unlock(&s->lock);
	shim_worker_send(s, msg);
	pthread_mutex_lock(&s->lock);
	json_decref(msg);
	return 0;
}

void shim_job_free_all(struct shim *s)
{
	while (s->jobs) {
		struct shim_job *p = s->jobs;
		s->jobs = p->next;
		pred_free(p);
	}
	s->ndone = 0;
	s->done_bytes = 0;
}
