/* SPDX-License-Identifier: Apache-2.0 */
/* connections.c: the HTTP connections kiln-shim holds: a bound on their number (the oldest one that is not
 * being answered is closed to make room), and deadlines for idle connections and for slow requests. */
#include <errno.h>
#include <microhttpd.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "common/fs.h"
#include "shim/http.h"

/*
 * A connection is IDLE from its start, and again after each answer, until its request line arrives; then
 * RECEIVING until its headers and body have arrived; then ANSWERED until the answer has gone (a request
 * that waits for its prediction, or an event stream, stays ANSWERED however long it takes). IDLE and
 * RECEIVING ones are in a list each, oldest first, so that the sweep and the bound look at the heads only.
 * CLOSING: its socket was shut down here; libmicrohttpd closes it and then says so (http_conn_closed).
 */
enum conn_state { CONN_IDLE, CONN_RECEIVING, CONN_ANSWERED, CONN_CLOSING };

struct http_conn {
	struct http_conn *prev, *next;
	int fd;
	enum conn_state state;
	double since; /* when it entered its state, kiln_monotonic() seconds */
};

struct conn_list {
	struct http_conn *head, *tail;
};

struct http_conns {
	pthread_mutex_t lock;
	struct conn_list idle, receiving;
	long open; /* connections not CLOSING */
	long max;
	double idle_timeout, request_timeout;
	long dropped; /* connections closed here, for the log */
};

int http_conns_new(struct http_conns **out, long max, double idle_timeout, double request_timeout)
{
	struct http_conns *t = calloc(1, sizeof(*t));
	if (!t)
		return -1;
	pthread_mutex_init(&t->lock, NULL);
	t->max = max;
	t->idle_timeout = idle_timeout;
	t->request_timeout = request_timeout;
	*out = t;
	return 0;
}

void http_conns_free(struct http_conns *t)
{
	if (!t)
		return;
	pthread_mutex_destroy(&t->lock);
	free(t);
}

static struct conn_list *list_of(struct http_conns *t, enum conn_state st)
{
	return st == CONN_IDLE ? &t->idle : st == CONN_RECEIVING ? &t->receiving : NULL;
}

static void unlink_conn(struct http_conns *t, struct http_conn *k)
{
	struct conn_list *l = list_of(t, k->state);
	if (!l)
		return;
	*(k->prev ? &k->prev->next : &l->head) = k->next;
	*(k->next ? &k->next->prev : &l->tail) = k->prev;
	k->prev = k->next = NULL;
}

/* Move K to state ST (t->lock held), at the tail of its list. */
static void set_state(struct http_conns *t, struct http_conn *k, enum conn_state st)
{
	unlink_conn(t, k);
	k->state = st;
	k->since = kiln_monotonic();
	struct conn_list *l = list_of(t, st);
	if (!l)
		return;
	k->prev = l->tail;
	*(l->tail ? &l->tail->next : &l->head) = k;
	l->tail = k;
}

/* Close K (t->lock held): shut its socket down, which libmicrohttpd sees as the client's end and closes.
 * The socket is still K's: libmicrohttpd calls http_conn_closed, which takes t->lock, before closing it. */
static void drop(struct http_conns *t, struct http_conn *k)
{
	unlink_conn(t, k);
	k->state = CONN_CLOSING;
	t->open--;
	t->dropped++;
	shutdown(k->fd, SHUT_RDWR);
}

void http_conn_started(struct http_conns *t, struct MHD_Connection *c, void **socket_context)
{
	const union MHD_ConnectionInfo *info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	struct http_conn *k = calloc(1, sizeof(*k));
	*socket_context = k;
	if (!k || !info)
		return; /* not tracked: libmicrohttpd's own limit and timeout still hold */
	k->fd = info->connect_fd;
	pthread_mutex_lock(&t->lock);
	k->state = CONN_ANSWERED; /* in no list yet */
	set_state(t, k, CONN_IDLE);
	t->open++;
	/* over the bound: close the connection that has waited longest without being answered, an idle one
	 * first (the new one, last in the list, only when every other one is being answered) */
	while (t->open > t->max && (t->idle.head || t->receiving.head))
		drop(t, t->idle.head ? t->idle.head : t->receiving.head);
	pthread_mutex_unlock(&t->lock);
}

void http_conn_closed(struct http_conns *t, void **socket_context)
{
	struct http_conn *k = *socket_context;
	*socket_context = NULL;
	if (!k)
		return;
	pthread_mutex_lock(&t->lock);
	if (k->state != CONN_CLOSING) {
		unlink_conn(t, k);
		t->open--;
	}
	pthread_mutex_unlock(&t->lock);
	free(k);
}

/* The record of connection C, or NULL when it is not tracked. */
static struct http_conn *conn_of(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	return info ? info->socket_context : NULL;
}

/* C enters state ST unless it is being closed. */
static void conn_enter(struct http_conns *t, struct MHD_Connection *c, enum conn_state st)
{
	struct http_conn *k = conn_of(c);
	if (!k)
		return;
	pthread_mutex_lock(&t->lock);
	if (k->state != CONN_CLOSING && k->state != st)
		set_state(t, k, st);
	pthread_mutex_unlock(&t->lock);
}

void http_conn_receiving(struct http_conns *t, struct MHD_Connection *c)
{
	conn_enter(t, c, CONN_RECEIVING);
}

void http_conn_answered(struct http_conns *t, struct MHD_Connection *c)
{
	conn_enter(t, c, CONN_ANSWERED);
}

void http_conn_idle(struct http_conns *t, struct MHD_Connection *c)
{
	conn_enter(t, c, CONN_IDLE);
}

long http_conns_sweep(struct http_conns *t)
{
	double now = kiln_monotonic();
	pthread_mutex_lock(&t->lock);
	while (t->idle.head && now - t->idle.head->since >= t->idle_timeout)
		drop(t, t->idle.head);
	while (t->receiving.head && now - t->receiving.head->since >= t->request_timeout)
		drop(t, t->receiving.head);
	long dropped = t->dropped;
	t->dropped = 0;
	pthread_mutex_unlock(&t->lock);
	return dropped;
}
