/* SPDX-License-Identifier: Apache-2.0 */
/* webhook.c: prediction webhooks, throttled, coalesced and retried by a few sender threads. */
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

#include "common/json.h"
#include "common/fs.h"
#include "shim/log.h"
#include "shim/shim.h"

#define SENDERS          4    /* threads sending webhooks: as many predictions are served at once */
#define THROTTLE_SECONDS 0.5  /* at most one "output"/"logs" webhook per prediction in this time */
#define RETRY_FIRST      0.1  /* seconds before the first retry of a "completed" webhook; doubled each time */
#define RETRY_TOTAL      30.0 /* no retry starts later than this after the first attempt */
#define RETRY_AFTER_MAX  10.0 /* a longer Retry-After is cut to this */
#define NEVER            1e300 /* a wake-up time that does not come */
#define CONNECT_TIMEOUT  5L
#define REQUEST_TIMEOUT  10L

/*
 * What is still to be sent for one prediction. A sender sends PENDING (the latest non-terminal state) no
 * sooner than THROTTLE_SECONDS after the previous one (at once for "start", and when COMPLETED waits behind
 * it), then COMPLETED, retried until delivered, refused or RETRY_TOTAL runs out. One sender at a time owns
 * a slot (BUSY), so a prediction's webhooks go one after the other, in order.
 */
struct slot {
	struct slot *next;
	char *id;
	char *url;                 /* of the latest send */
	char *pending;             /* JSON body of the latest "start"/"output"/"logs" not sent yet, or NULL */
	const char *pending_event; /* the event that made PENDING (a static string), for messages */
	bool pending_now;          /* PENDING includes a "start": no throttle */
	char *completed;           /* JSON body of the "completed" webhook, or NULL */
	bool busy;                 /* a sender is sending for this slot: the others leave it alone */
	double last_sent; /* when the previous non-terminal webhook went (monotonic seconds); 0: never */
	int attempts;     /* of COMPLETED so far */
	double first_try; /* when COMPLETED was queued */
	double next_try;  /* COMPLETED not before this */
};

struct sender {
	struct shim_webhooks *w;
	pthread_t thread;
	CURL *curl; /* reused for keep-alive */
};

struct shim_webhooks {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* on CLOCK_MONOTONIC: a send, a slot with work left by its sender, or free() */
	struct slot *slots;  /* in the order they were made */
	bool stopping;
	double deadline;       /* when stopping: give up on what is left at this time */
	atomic_llong abort_ns; /* the deadline for transfers in flight (0: none), nanoseconds */
	char *authorization;   /* "Authorization: Bearer $WEBHOOK_AUTH_TOKEN", or NULL */
	struct sender senders[SENDERS];
	int started; /* senders whose thread runs */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
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

/* What a POST came back with. */
struct answer {
	long status;                    /* the HTTP status, 0 when there was no answer */
	double retry_after;             /* seconds from a Retry-After header, or -1 */
	char why[CURL_ERROR_SIZE + 32]; /* what went wrong, for the log ("" when it was delivered) */
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
	return at != 0 && (long long)(kiln_monotonic() * 1e9) >= at;
}

/*
 * POST BODY to URL with C. Returns SENT (2xx), RETRY (a connection error, 429 or 5xx) or DROPPED (any other
 * answer, or the transfer was stopped by free()); *A says what came back and, unless SENT, what went wrong
 * (in words that never hold URL's path or query, which may carry secrets).
 */
static int post(struct shim_webhooks *w, CURL *c, const char *url, const char *body, struct answer *a)
{
	char errbuf[CURL_ERROR_SIZE] = "";
	*a = (struct answer){.retry_after = -1};
	struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
	if (headers)
		headers = curl_slist_append(headers, "Expect:");
	if (headers && w->authorization)
		headers = curl_slist_append(headers, w->authorization);
	if (!headers) {
		snprintf(a->why, sizeof(a->why), "out of memory");
		return RETRY;
	}
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
	curl_easy_setopt(c, CURLOPT_HEADERDATA, a);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, check_abort);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, w);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	CURLcode rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a->status);
	curl_slist_free_all(headers);
	if (rc == CURLE_ABORTED_BY_CALLBACK) {
		snprintf(a->why, sizeof(a->why), "shutting down");
		return DROPPED;
	}
	if (rc != CURLE_OK) {
		snprintf(a->why, sizeof(a->why), "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
		return RETRY;
	}
	if (a->status >= 200 && a->status < 300)
		return SENT;
	snprintf(a->why, sizeof(a->why), "answered HTTP %ld", a->status);
	return a->status == 429 || a->status >= 500 ? RETRY : DROPPED;
}

/* ---- the senders ---- */

/*
 * The first slot no sender owns with something to send now, or NULL; *completed says whether it is its
 * COMPLETED (else its PENDING). Free slots with nothing left to send and no throttle to remember are freed
 * on the way; *wake gets the earliest time something else becomes due (NEVER: nothing, but for what the
 * busy slots' senders will find when they are done).
 */
static struct slot *next_due(struct shim_webhooks *w, double now, bool *completed, double *wake)
{
	*wake = NEVER;
	for (struct slot **sp = &w->slots; *sp;) {
		struct slot *s = *sp;
		double at;
		if (s->busy) {
			sp = &s->next;
			continue;
		}
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

/*
 * After a failed attempt at S's COMPLETED (BODY, taken out of it): queue a retry and return its delay in
 * seconds, or free BODY and return -1 (RETRY_TOTAL ran out, or a newer COMPLETED was queued meanwhile:
 * *superseded says which).
 */
static double schedule_retry(struct slot *s, char *body, double retry_after, bool *superseded)
{
	double now = kiln_monotonic();
	double delay = RETRY_FIRST;
	for (int i = 1; i < s->attempts && delay < RETRY_TOTAL; i++)
		delay *= 2;
	if (retry_after > RETRY_AFTER_MAX)
		retry_after = RETRY_AFTER_MAX;
	if (retry_after > delay)
		delay = retry_after;
	*superseded = s->completed != NULL;
	if (*superseded || now + delay > s->first_try + RETRY_TOTAL) {
		free(body);
		return -1;
	}
	s->completed = body;
	s->next_try = now + delay;
	return delay;
}

/* Wait on W's condition until WAKE (monotonic seconds; NEVER: until signalled). W->lock is held. */
static void wait_until(struct shim_webhooks *w, double wake)
{
	if (wake >= NEVER) {
		pthread_cond_wait(&w->cond, &w->lock);
		return;
	}
	time_t sec = (time_t)wake;
	struct timespec ts = {.tv_sec = sec, .tv_nsec = (long)((wake - (double)sec) * 1e9)};
	pthread_cond_timedwait(&w->cond, &w->lock, &ts);
}

/*
 * Log the failed attempt A (RESULT) at a webhook, named by EXTRA (stolen). A "completed" is an error when
 * it is lost (RETRY: seconds until it is tried again, or -1), a warning when it will be tried again (or a
 * newer one replaced it: SUPERSEDED); the other events are warnings: the next webhook carries their state.
 */
static void report(json_t *extra, bool completed, int result, int attempt, double retry, bool superseded,
                   const struct answer *a)
{
	if (!completed || superseded)
		shim_log("warning", extra, "webhook not delivered: %s", a->why);
	else if (retry >= 0)
		shim_log("warning", extra, "webhook not delivered, retrying in %.1f s: %s", retry, a->why);
	else if (result == RETRY)
		shim_log("error", extra, "webhook not delivered, giving up after %d attempts: %s", attempt,
		         a->why);
	else
		shim_log("error", extra, "webhook not delivered: %s", a->why);
}

/*
 * One sender: takes the first due slot no other sender owns, owns it while it sends, and goes on until
 * free() stops it: at its deadline, or when nothing is left that no other sender owns. Failures are
 * logged with the prediction's id and the event (report()).
 */
static void *sender_run(void *arg)
{
	struct sender *me = arg;
	struct shim_webhooks *w = me->w;
	pthread_mutex_lock(&w->lock);
	for (;;) {
		double now = kiln_monotonic(), wake;
		if (w->stopping && now >= w->deadline)
			break;
		bool completed = false;
		struct slot *s = next_due(w, now, &completed, &wake);
		if (!s) {
			if (w->stopping && wake >= NEVER)
				break;
			wait_until(w, w->stopping && w->deadline < wake ? w->deadline : wake);
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
		int attempt = s->attempts;
		s->busy = true;
		char *url = strdup(s->url);
		pthread_mutex_unlock(&w->lock);

		/* S is not freed while busy, and its id does not change: it is read without the lock */
		struct answer a = {.retry_after = -1, .why = "out of memory"};
		int result = url ? post(w, me->curl, url, body, &a) : RETRY;
		free(url);
		json_t *extra = NULL;
		if (result != SENT) {
			extra = json_pack("{s:s, s:s}", "prediction_id", s->id, "event", event);
			if (extra && a.status)
				json_object_set_new(extra, "status", json_integer(a.status));
			if (extra && completed)
				json_object_set_new(extra, "attempt", json_integer(attempt));
		}

		pthread_mutex_lock(&w->lock);
		double retry = -1;
		bool superseded = false;
		if (!completed) {
			s->last_sent = kiln_monotonic();
			free(body);
		} else if (result == RETRY) {
			retry = schedule_retry(s, body, a.retry_after, &superseded);
		} else {
			free(body);
		}
		s->busy = false;
		/* what S has left may be due now: another sender takes it if this one takes another slot */
		if (s->pending || s->completed)
			pthread_cond_signal(&w->cond);
		if (result != SENT) {
			pthread_mutex_unlock(&w->lock);
			report(extra, completed, result, attempt, retry, superseded, &a);
			pthread_mutex_lock(&w->lock);
		}
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/* ---- the API ---- */

/* Stop W's senders (giving up on what is left at once unless TIMEOUT) and free W; a "completed" webhook
 * still queued then is logged as lost. */
static void stop_and_free(struct shim_webhooks *w, double timeout)
{
	pthread_mutex_lock(&w->lock);
	w->stopping = true;
	w->deadline = kiln_monotonic() + (timeout > 0 ? timeout : 0);
	atomic_store(&w->abort_ns, (long long)(w->deadline * 1e9));
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	for (int i = 0; i < w->started; i++)
		pthread_join(w->senders[i].thread, NULL);
	while (w->slots) {
		struct slot *s = w->slots;
		w->slots = s->next;
		if (s->completed)
			shim_log("error",
			         json_pack("{s:s, s:s, s:i}", "prediction_id", s->id, "event", "completed",
			                   "attempt", s->attempts),
			         "webhook not delivered: shutting down");
		slot_free(s);
	}
	for (int i = 0; i < SENDERS; i++)
		if (w->senders[i].curl)
			curl_easy_cleanup(w->senders[i].curl);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	free(w->authorization);
	free(w);
}

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
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, &attr);
	pthread_condattr_destroy(&attr);
	int rc = 0;
	for (int i = 0; i < SENDERS && rc == 0; i++) {
		struct sender *sd = &w->senders[i];
		sd->w = w;
		sd->curl = curl_easy_init();
		rc = sd->curl ? pthread_create(&sd->thread, NULL, sender_run, sd) : ENOMEM;
		if (rc == 0)
			w->started++;
	}
	if (rc != 0) {
		stop_and_free(w, 0);
		return kiln_error_errno(err, rc, "cannot start the webhook threads");
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
	char *body = kiln_json_dumps(prediction, JSON_COMPACT);
	char *url_copy = strdup(url);
	pthread_mutex_lock(&w->lock);
	struct slot *s = w->stopping || !body || !url_copy ? NULL : find_slot(w, id ? id : "");
	if (!s) {
		bool stopping = w->stopping;
		pthread_mutex_unlock(&w->lock);
		free(body);
		free(url_copy);
		if (!stopping)
			shim_log("error",
			         json_pack("{s:s, s:s}", "prediction_id", id ? id : "", "event", event),
			         "webhook not queued: out of memory");
		return;
	}
	free(s->url);
	s->url = url_copy;
	if (strcmp(event, "completed") == 0) {
		free(s->completed);
		s->completed = body;
		s->attempts = 0;
		s->first_try = kiln_monotonic();
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
	if (w)
		stop_and_free(w, timeout);
}

const char *shim_webhook_url_problem(const char *url)
{
	CURLU *u = curl_url();
	if (!u)
		return "out of memory";
	/* CURLU_NON_SUPPORT_SCHEME: parse any scheme, so that the answer names the scheme, not the parser */
	const char *why = NULL;
	char *scheme = NULL, *host = NULL;
	if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK)
		why = "invalid or missing URL scheme";
	else if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	         (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0))
		why = "URL scheme not permitted";
	else if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host)
		why = "URL host invalid";
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(u);
	return why;
}
