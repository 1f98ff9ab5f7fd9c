/* SPDX-License-Identifier: Apache-2.0 */
/* sse.c: a prediction as server-sent events (Accept: text/event-stream), Cog 0.22's: start, output, log,
 * metric and completed; a stream attaching to a running one replays what is in its history, or says it
 * cannot. */
#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "shim/http.h"

/* The most event streams one prediction has open at once, as coglet's MAX_STREAM_SUBSCRIBERS: one more is
 * answered 429 {"error": "Too many stream subscribers"}. */
#define SHIM_MAX_STREAMS 1024

/* The state of an SSE stream: what of its prediction was sent, and bytes not yet taken by MHD. */
struct sse {
	struct shim *s;
	struct shim_job *p;
	struct MHD_Connection *c;
	struct shim_waiter wait;
	bool quiet; /* suspended with nothing to send since quiet_since */
	struct timespec quiet_since;
	bool started;
	size_t next; /* the first of P's events (p->events) not sent yet */
	bool done;
	struct kiln_buf pending;
	size_t off;
};

static void sse_event(struct kiln_buf *b, const char *event, json_t *data)
{
	char *text = kiln_json_dumps(data, JSON_COMPACT);
	kiln_buf_printf(b, "event: %s\ndata: %s\n\n", event, text ? text : "null");
	free(text);
	json_decref(data);
}

/* EV of P as an event of its stream, appended to B: "log" {"source", "data"}, "output" {"chunk", "index"}
 * or "metric" {"name", "value", "mode"}. */
static void sse_job_event(struct kiln_buf *b, const struct shim_job *p, const struct shim_event *ev)
{
	switch (ev->kind) {
	case SHIM_EVENT_LOG:
		sse_event(b, "log",
		          json_pack("{s:s, s:o}", "source", ev->stderr ? "stderr" : "stdout", "data",
		                    shim_json_text(p->logs.ptr + ev->from, ev->to - ev->from)));
		break;
	case SHIM_EVENT_OUTPUT: {
		json_t *chunk = json_array_get(p->output, ev->from);
		if (chunk)
			sse_event(b, "output",
			          json_pack("{s:O, s:I}", "chunk", chunk, "index", (json_int_t)ev->from));
		break;
	}
	case SHIM_EVENT_METRIC:
		sse_event(b, "metric", json_incref(ev->metric));
		break;
	}
}

/* Collect the events that happened since the last call (s->lock held): "start" once the prediction was sent
 * to the worker, each of its events in the order they happened, and "completed" with the final response. */
static void sse_collect(struct sse *e)
{
	struct shim_job *p = e->p;
	if (!e->started && p->dispatched) {
		sse_event(&e->pending, "start", json_pack("{s:s, s:s}", "id", p->id, "status", "processing"));
		e->started = true;
	}
	for (; e->next < p->nevents; e->next++)
		sse_job_event(&e->pending, p, &p->events[e->next]);
	if (p->status >= JOB_SUCCEEDED) {
		sse_event(&e->pending, "completed", shim_job_json(p));
		e->done = true;
	}
}

/* Where a stream attaching to P (s->lock held) begins, as Cog's replay history has it: at the start when
 * all of P's events so far (its "start", its events and its "completed") fit in s->stream_history; with
 * none of them (but a "completed" still to come) when it is 0; else it is one "error" event saying how many
 * were dropped, and the end. */
static void sse_attach(struct sse *e, const struct shim *s)
{
	const struct shim_job *p = e->p;
	size_t seen = (p->dispatched ? 1 : 0) + p->nevents + (p->status >= JOB_SUCCEEDED ? 1 : 0);
	if (s->stream_history == 0) {
		e->started = p->dispatched;
		e->next = p->nevents;
	} else if (seen > (size_t)s->stream_history) {
		sse_event(&e->pending, "error",
		          json_pack("{s:s, s:I}", "error", "SSE stream replay truncated; events were dropped",
		                    "skipped", (json_int_t)(seen - (size_t)s->stream_history)));
		e->done = true;
	}
}

/* Seconds without an event before an SSE stream gets a keep-alive comment: 15, or KILN_SSE_KEEPALIVE. */
static double sse_keepalive(void)
{
	static double seconds = -1;
	if (seconds < 0) {
		const char *env = getenv("KILN_SSE_KEEPALIVE");
		double v = env && *env ? strtod(env, NULL) : 0;
		seconds = v > 0 ? v : 15.0;
	}
	return seconds;
}

/* MHD's reader for an SSE response: the events so far; with none, the connection is suspended until the
 * prediction changes (or shim_server_tick's keep-alive), and 0 returned. */
static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct sse *e = cls;
	(void)pos;
	if (e->off >= e->pending.len) {
		if (e->done)
			return MHD_CONTENT_READER_END_OF_STREAM;
		e->pending.len = 0;
		e->off = 0;
		pthread_mutex_lock(&e->s->lock);
		sse_collect(e);
		if (e->pending.len) {
			e->quiet = false;
		} else if (e->quiet && shim_since(&e->quiet_since) >= sse_keepalive()) {
			kiln_buf_puts(&e->pending, ": keep-alive\n\n");
			e->quiet = false;
		} else if (e->s->server_stopping) {
			e->done = true;
		} else {
			if (!e->quiet) {
				e->quiet = true;
				clock_gettime(CLOCK_MONOTONIC, &e->quiet_since);
			}
			http_suspend_on(e->p, &e->wait, e->c);
		}
		pthread_mutex_unlock(&e->s->lock);
		if (!e->pending.len)
			return e->done ? MHD_CONTENT_READER_END_OF_STREAM : 0;
	}
	size_t n = e->pending.len - e->off < max ? e->pending.len - e->off : max;
	memcpy(buf, e->pending.ptr + e->off, n);
	e->off += n;
	return (ssize_t)n;
}

static void sse_free(void *cls)
{
	struct sse *e = cls;
	pthread_mutex_lock(&e->s->lock);
	http_unlink_waiter(e->p, &e->wait);
	e->p->streams--;
	shim_job_release(e->s, e->p);
	pthread_mutex_unlock(&e->s->lock);
	kiln_buf_release(&e->pending);
	free(e);
}

/* Answer with an event stream of P (s->lock held, released here; one reference to P held and handed over);
 * ATTACH: P was there before this request (a PUT with its id), its events so far are replayed. */
enum MHD_Result http_sse_answer(struct shim *s, struct MHD_Connection *c, struct shim_job *p, bool attach)
{
	if (p->streams >= SHIM_MAX_STREAMS) {
		/* as coglet caps a prediction's live subscribers */
		shim_job_release(s, p);
		pthread_mutex_unlock(&s->lock);
		return http_reply(c, 429, json_pack("{s:s}", "error", "Too many stream subscribers"));
	}
	struct sse *e = calloc(1, sizeof(*e));
	if (!e) {
		shim_job_release(s, p);
		pthread_mutex_unlock(&s->lock);
		return MHD_NO;
	}
	e->s = s;
	e->p = p;
	p->streams++;
	e->c = c;
	e->wait.sse = e;
	if (attach)
		sse_attach(e, s);
	pthread_mutex_unlock(&s->lock);
	struct MHD_Response *r =
	    MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, sse_read, e, sse_free);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
	enum MHD_Result ret = MHD_queue_response(c, 200, r);
	MHD_destroy_response(r);
	return ret;
}

bool http_sse_due(const struct shim_waiter *w)
{
	return w->sse && w->sse->quiet && shim_since(&w->sse->quiet_since) >= sse_keepalive();
}
