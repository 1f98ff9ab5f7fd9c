/* SPDX-License-Identifier: Apache-2.0 */
/* webhook.c: prediction webhooks, throttled, coalesced and retried by one background thread. */
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "shim/shim.h"

#define THROTTLE_SECONDS 0.5  /* at most one "output"/"logs" webhook per prediction in this time */
#define RETRY_FIRST      0.1  /* seconds before the first retry of a "completed" webhook; doubled each time */
#define RETRY_TOTAL      30.0 /* no retry starts later than this after the first attempt */
#define RETRY_AFTER_MAX  10.0 /* a longer Retry-After is cut to this */
#define NEVER            1e300 /* a wake-up time that does not come */
#define CONNECT_TIMEOUT  5L
#define REQUEST_TIMEOUT  10L

/*
 * What is still to be sent for one prediction. The thread sends PENDING (the latest non-terminal state)
 * no sooner than THROTTLE_SECONDS after the previous one (at once for "start", and when COMPLETED waits
 * behind it), then COMPLETED, retried until delivered, refused or RETRY_TOTAL runs out.
 */
struct slot {
	struct slot *next;
	char *id;
	char *url;                 /* of the latest send */
	char *pending;             /* JSON body of the latest "start"/"output"/"logs" not sent yet, or NULL */
	const char *pending_event; /* the event that made PENDING (a static string), for messages */
	bool pending_now;          /* PENDING includes a "start": no throttle */
	char *completed;           /* JSON body of the "completed" webhook, or NULL */
	double last_sent; /* when the previous non-terminal webhook went (monotonic seconds); 0: never */
	int attempts;     /* of COMPLETED so far */
	double first_try; /* when COMPLETED was queued */
	double next_try;  /* COMPLETED not before this */
};

struct shim_webhooks {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* on CLOCK_MONOTONIC: a send, or free() */
	struct slot *slots;  /* in the order they were made */
	bool stopping;
	double deadline;       /* when stopping: give up on what is left at this time */
	atomic_llong abort_ns; /* the deadline for transfers in flight (0: none), nanoseconds */
	char *authorization;   /* "Authorization: Bearer $WEBHOOK_AUTH_TOKEN", or NULL */
	CURL *curl;            /* reused by the thread, for keep-alive */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void slot_free(struct slot *s)
{
	free(s->id);
	free(s->url);
	free(s->pending);
	free(s->completed);
	free(s);
}

/* ---- one POST ---- */

enum { SENT, RETRY, DROPPED };

struct answer {
	double retry_after; /* seconds from a Retry-After header, or -1 */
};

static size_t discard_body(char *data, size_t size, size_t nmemb, void *ctx)
{
	return size * nmemb;
}

/* libcurl's header callback: keeps Retry-After when it is a number of seconds. */
static size_t read_header(char *data, size_t size, size_t nmemb, void *ctx)
{
	struct answer *a = ctx;
	size_t n = size * nmemb;
	if (n > 12 && strncasecmp(data, "retry-after:", 12) == 0) {
		char value[32];
		size_t len = n - 12 < sizeof(value) - 1 ? n - 12 : sizeof(value) - 1;
		memcpy(value, data + 12, len);
		value[len] = 0;
		char *end;
		double v = strtod(value, &end);
		while (isspace((unsigned char)*end))
			end++;
		if (end != value && !*end && v >= 0)
			a->retry_after = v;
	}
	return n;
}

/* libcurl's progress callback: stops a transfer still running when free()'s deadline has passed. */
static int check_abort(void *ctx, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	struct shim_webhooks *w = ctx;
	long long at = atomic_load(&w->abort_ns);
	return at != 0 && (long long)(now_seconds() * 1e9) >= at;
}

/*
 * POST BODY to URL. Returns SENT (2xx), RETRY (a connection error, 429 or 5xx; *retry_after set from the
 * answer's Retry-After, else -1) or DROPPED (any other answer, or the transfer was stopped by free()).
 * What went wrong goes to stderr, naming EVENT and ID.
 */
static int post(struct shim_webhooks *w, const char *url, const char *body, const char *event, const char *id,
                double *retry_after)
{
	char errbuf[CURL_ERROR_SIZE] = "";
	struct answer a = {.retry_after = -1};
	struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
	if (headers)
		headers = curl_slist_append(headers, "Expect:");
	if (headers && w->authorization)
		headers = curl_slist_append(headers, w->authorization);
	if (!headers) {
		fprintf(stderr, "webhook: cannot send '%s' for prediction '%s': out of memory\n", event, id);
		return RETRY;
	}
	CURL *c = w->curl;
	curl_easy_reset(c);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_USERAGENT, "kiln");
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, REQUEST_TIMEOUT);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_body);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, read_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &a);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, check_abort);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, w);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	CURLcode rc = curl_easy_perform(c);
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(headers);
	*retry_after = a.retry_after;
	if (rc == CURLE_ABORTED_BY_CALLBACK) {
		fprintf(stderr, "webhook: gave up sending '%s' for prediction '%s': shutting down\n", event,
		        id);
		return DROPPED;
	}
	if (rc != CURLE_OK) {
		fprintf(stderr, "webhook: cannot send '%s' for prediction '%s': %s\n", event, id,
		        errbuf[0] ? errbuf : curl_easy_strerror(rc));
		return RETRY;
	}
	if (status >= 200 && status < 300)
		return SENT;
	fprintf(stderr, "webhook: '%s' for prediction '%s' answered HTTP %ld\n", event, id, status);
	return status == 429 || status >= 500 ? RETRY : DROPPED;
}

/* ---- the thread ---- */

/*
 * The slot with something to send now, or NULL; *completed says whether it is its COMPLETED (else its
 * PENDING). Slots with nothing left to send and no throttle to remember are freed on the way; *wake
 * gets the earliest time something else becomes due (NEVER: nothing).
 */
static struct slot *next_due(struct shim_webhooks *w, double now, bool *completed, double *wake)
{
	*wake = NEVER;
	for (struct slot **sp = &w->slots; *sp;) {
		struct slot *s = *sp;
		double at;
		if (s->pending) {
			at = s->pending_now || s->completed || w->stopping ? 0
			                                                   : s->last_sent + THROTTLE_SECONDS;
			*completed = false;
		} else if (s->completed) {
			at = s->next_try;
			*completed = true;
		} else if (w->stopping || now >= s->last_sent + THROTTLE_SECONDS) {
			*sp = s->next;
			slot_free(s);
			continue;
		} else {
			at = s->last_sent + THROTTLE_SECONDS;
			if (at < *wake)
				*wake = at;
			sp = &s->next;
			continue;
		}
		if (at <= now)
			return s;
		if (at < *wake)
			*wake = at;
		sp = &s->next;
	}
	return NULL;
}

/* After a failed attempt at S's COMPLETED (BODY, taken out of it): queue a retry, or give up. */
static void schedule_retry(struct slot *s, char *body, double retry_after)
{
	double now = now_seconds();
	double delay = RETRY_FIRST;
	for (int i = 1; i < s->attempts && delay < RETRY_TOTAL; i++)
		delay *= 2;
	if (retry_after > RETRY_AFTER_MAX)
		retry_after = RETRY_AFTER_MAX;
	if (retry_after > delay)
		delay = retry_after;
	if (now + delay > s->first_try + RETRY_TOTAL || s->completed) {
		if (!s->completed)
			fprintf(
			    stderr,
			    "webhook: gave up sending 'completed' for prediction '%s' after %d attempts\n",
			    s->id, s->attempts);
		free(body);
		return;
	}
	s->completed = body;
	s->next_try = now + delay;
}

static void *worker(void *arg)
{
	struct shim_webhooks *w = arg;
	pthread_mutex_lock(&w->lock);
	for (;;) {
		double now = now_seconds(), wake;
		if (w->stopping && now >= w->deadline)
			break;
		bool completed = false;
		struct slot *s = next_due(w, now, &completed, &wake);
		if (!s) {
			if (w->stopping && !w->slots)
				break;
			if (w->stopping)
				if (w->deadline < wake)
					wake = w->deadline;
			if (wake >= NEVER) {
				pthread_cond_wait(&w->cond, &w->lock);
			} else {
				time_t sec = (time_t)wake;
				struct timespec ts = {.tv_sec = sec,
				                      .tv_nsec = (long)((wake - (double)sec) * 1e9)};
				pthread_cond_timedwait(&w->cond, &w->lock, &ts);
			}
			continue;
		}
		char *body = completed ? s->completed : s->pending;
		const char *event = completed ? "completed" : s->pending_event;
		if (completed) {
			s->completed = NULL;
			s->attempts++;
		} else {
			s->pending = NULL;
			s->pending_now = false;
		}
		char *url = strdup(s->url);
		pthread_mutex_unlock(&w->lock);

		double retry_after = -1;
		int result = url ? post(w, url, body, event, s->id, &retry_after) : RETRY;
		free(url);

		pthread_mutex_lock(&w->lock);
		if (!completed) {
			s->last_sent = now_seconds();
			free(body);
		} else if (result == RETRY) {
			schedule_retry(s, body, retry_after);
		} else {
			free(body);
		}
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/* ---- the API ---- */

int shim_webhooks_new(struct shim_webhooks **out, struct kiln_error **err)
{
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK)
		return kiln_error_set(err, KILN_EFAIL, "cannot initialize libcurl: %s",
		                      curl_easy_strerror(curl_init_rc));
	struct shim_webhooks *w = calloc(1, sizeof(*w));
	if (!w)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	const char *token = getenv("WEBHOOK_AUTH_TOKEN"); /* as Cog does */
	if (token && *token && asprintf(&w->authorization, "Authorization: Bearer %s", token) < 0)
		w->authorization = NULL;
	w->curl = curl_easy_init();
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, &attr);
	pthread_condattr_destroy(&attr);
	int rc = w->curl ? pthread_create(&w->thread, NULL, worker, w) : ENOMEM;
	if (rc != 0) {
		if (w->curl)
			curl_easy_cleanup(w->curl);
		pthread_cond_destroy(&w->cond);
		pthread_mutex_destroy(&w->lock);
		free(w->authorization);
		free(w);
		return kiln_error_errno(err, rc, "cannot start the webhook thread");
	}
	*out = w;
	return 0;
}

/* Whether FILTER (NULL: all four events) lets EVENT through. */
static bool event_wanted(const json_t *filter, const char *event)
{
	if (!filter)
		return true;
	size_t i;
	const json_t *name;
	json_array_foreach(filter, i, name)
	{
		if (json_is_string(name) && strcmp(json_string_value(name), event) == 0)
			return true;
	}
	return false;
}

/* The slot for prediction ID, made (at the end of the list) when there is none; NULL when memory runs out. */
static struct slot *find_slot(struct shim_webhooks *w, const char *id)
{
	struct slot **sp = &w->slots;
	for (; *sp; sp = &(*sp)->next)
		if (strcmp((*sp)->id, id) == 0)
			return *sp;
	struct slot *s = calloc(1, sizeof(*s));
	if (!s || !(s->id = strdup(id))) {
		free(s);
		return NULL;
	}
	*sp = s;
	return s;
}

void shim_webhooks_send(struct shim_webhooks *w, const char *url, const char *event, const json_t *filter,
                        const json_t *prediction)
{
	if (!w || !url || !*url || !event_wanted(filter, event))
		return;
	const char *id = json_string_value(json_object_get(prediction, "id"));
	char *body = json_dumps(prediction, JSON_COMPACT);
	char *url_copy = strdup(url);
	if (!body || !url_copy) {
		fprintf(stderr, "webhook: cannot queue '%s': out of memory\n", event);
		free(body);
		free(url_copy);
		return;
	}
	pthread_mutex_lock(&w->lock);
	struct slot *s = w->stopping ? NULL : find_slot(w, id ? id : "");
	if (!s) {
		pthread_mutex_unlock(&w->lock);
		free(body);
		free(url_copy);
		return;
	}
	free(s->url);
	s->url = url_copy;
	if (strcmp(event, "completed") == 0) {
		free(s->completed);
		s->completed = body;
		s->attempts = 0;
		s->first_try = now_seconds();
		s->next_try = 0;
	} else {
		free(s->pending);
		s->pending = body;
		s->pending_now |= strcmp(event, "start") == 0;
		s->pending_event = strcmp(event, "start") == 0  ? "start"
		                   : strcmp(event, "logs") == 0 ? "logs"
		                                                : "output";
	}
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

void shim_webhooks_free(struct shim_webhooks *w, double timeout)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	w->stopping = true;
	w->deadline = now_seconds() + (timeout > 0 ? timeout : 0);
	atomic_store(&w->abort_ns, (long long)(w->deadline * 1e9));
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	while (w->slots) {
		struct slot *s = w->slots;
		w->slots = s->next;
		slot_free(s);
	}
	curl_easy_cleanup(w->curl);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	free(w->authorization);
	free(w);
}
