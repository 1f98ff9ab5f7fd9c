/* SPDX-License-Identifier: Apache-2.0 */
/*
 * http.h: the top layer, Cog's HTTP API (server.c, connections.c, requests.c, sse.c): waiting connections,
 * requests and replies. It works on the table of jobs (table.h) and, for the health check, the worker
 * (worker.h); nothing below it calls into it but through s->job_changed.
 */
#ifndef KILN_SHIM_HTTP_H
#define KILN_SHIM_HTTP_H

#include <microhttpd.h>

#include "shim/table.h"

struct sse;

/* A connection suspended until its prediction changes; in the prediction's list while suspended. Guarded
 * by shim.lock. */
struct shim_waiter {
	struct shim_waiter *next;
	struct MHD_Connection *c;
	bool linked;
	struct sse *sse; /* the event stream that waits, or NULL (a synchronous request) */
};

/* One request: its body as it arrives; then the prediction a synchronous request waits for. */
struct request {
	struct kiln_buf body;
	bool started;  /* the access handler has seen it */
	bool answered; /* all of it arrived: it is being answered */
	bool nul_url;  /* its path holds an escaped NUL ("%00"), which the unescaped URL cannot show */
	bool too_large;
	struct shim_job *pred;   /* one reference held, or NULL */
	struct shim_waiter wait; /* on pred's waiters, or on s->held */
};

/* Suspend W's connection until P changes (s->lock held; from MHD's callbacks only). */
void http_suspend_on(struct shim_job *p, struct shim_waiter *w, struct MHD_Connection *c);
/* Hold REQ's connection until the health changes or a slot frees: true when it is held (s->lock held;
 * from MHD's callbacks only), as s->activated asks while STARTING or with every slot taken. */
bool http_hold(struct shim *s, struct request *req, struct MHD_Connection *c);
/* Take W out of P's list when it is there (s->lock held). */
void http_unlink_waiter(struct shim_job *p, struct shim_waiter *w);

/* Queue a reply with STATUS whose body is the JSON text in B (taken: B is left empty). */
enum MHD_Result http_reply_text(struct MHD_Connection *c, unsigned status, struct kiln_buf *b);
/* Queue a JSON reply (BODY is stolen) with STATUS. */
enum MHD_Result http_reply(struct MHD_Connection *c, unsigned status, json_t *body);
/* Reply with P's response (s->lock held, released here; the caller's reference to P is dropped). */
enum MHD_Result http_reply_pred(struct shim *s, struct MHD_Connection *c, unsigned status,
                                struct shim_job *p);
/* {"detail": MSG} with STATUS. */
enum MHD_Result http_detail(struct MHD_Connection *c, unsigned status, const char *msg);
/* coglet's {"error": MSG, "status": "failed"} with STATUS, for a job that cannot start (409, 503). */
enum MHD_Result http_failed(struct MHD_Connection *c, unsigned status, const char *msg);
/* FastAPI's 422 for one problem at LOC (a JSON array, stolen). */
enum MHD_Result http_invalid(struct MHD_Connection *c, json_t *loc, const char *msg, const char *type);

/* ---- connections.c: the bound on connections and their deadlines ---- */

struct http_conns;
/* The table for at most MAX connections; IDLE_TIMEOUT: seconds a connection may wait for its next request
 * line, REQUEST_TIMEOUT: seconds a request's headers and body may take after its request line. */
int http_conns_new(struct http_conns **out, long max, double idle_timeout, double request_timeout);
void http_conns_free(struct http_conns *t);
/* libmicrohttpd's connection notifications: a new connection (the oldest connection not being answered
 * is closed when it makes one too many), and its end. */
void http_conn_started(struct http_conns *t, struct MHD_Connection *c, void **socket_context);
void http_conn_closed(struct http_conns *t, void **socket_context);
/* C's request line arrived; all of its request did (it is being answered); its answer went. */
void http_conn_receiving(struct http_conns *t, struct MHD_Connection *c);
void http_conn_answered(struct http_conns *t, struct MHD_Connection *c);
void http_conn_idle(struct http_conns *t, struct MHD_Connection *c);
/* Close the connections past their deadline; returns how many were closed here since the last call. */
long http_conns_sweep(struct http_conns *t);

/* ---- requests.c ---- */

/* POST /predictions and PUT /predictions/{id} (URL_ID: the id in the URL, or NULL); for KIND
 * SHIM_JOB_TRAINING, POST /trainings and PUT /trainings/{id} (404 when the model has no trainer). */
enum MHD_Result http_predict(struct shim *s, struct MHD_Connection *c, struct request *req,
                             enum shim_job_kind kind, const char *url_id);
/* POST /predictions/{id}/cancel (or /trainings/{id}/cancel for KIND SHIM_JOB_TRAINING): 200 {} when a
 * cancel was sent, 404 {} when no job of KIND runs with that id. */
enum MHD_Result http_cancel(struct shim *s, struct MHD_Connection *c, enum shim_job_kind kind,
                            const char *id);

/* ---- sse.c ---- */

/* Answer with an event stream of P (s->lock held, released here; one reference to P held and handed over);
 * ATTACH: P was there before this request (a PUT with its id): its events so far are replayed from its
 * history (s->stream_history), or one "error" event says they cannot be. */
enum MHD_Result http_sse_answer(struct shim *s, struct MHD_Connection *c, struct shim_job *p, bool attach);
/* Whether W is an event stream quiet for long enough to get a keep-alive comment (s->lock held). */
bool http_sse_due(const struct shim_waiter *w);

/* ---- server.c ---- */

int shim_server_start(struct shim *s, struct kiln_error **err);
/* Stop accepting connections (the listening socket stays open until shim_server_stop). */
void shim_server_quiesce(struct shim *s);
void shim_server_stop(struct shim *s);
/* Resume the event streams that have been quiet for 15 s, for their keep-alive (s->lock not held). */
void shim_server_tick(struct shim *s);

#endif
