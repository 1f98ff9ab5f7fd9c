/* SPDX-License-Identifier: Apache-2.0 */
/* responses.c: a job as Cog's response object (table.h): JSON text written field by field, in Cog's order. */
#include <string.h>

#include "common/cleanup.h"
#include "shim/table.h"

static const char *const STATUS_NAMES[] = {"starting", "processing", "succeeded", "failed", "canceled"};

const char *shim_status_name(enum shim_status st)
{
	return STATUS_NAMES[st];
}

/* Append a timestamp (or null when T is empty). */
static int put_time(struct kiln_buf *b, const char *t)
{
	return *t ? shim_put_text(b, t, strlen(t)) : kiln_buf_puts(b, "null");
}

int shim_job_text(const struct shim_job *p, struct kiln_buf *b)
{
	/* one statement each: the order of the pieces is the order of the fields */
	int rc = kiln_buf_puts(b, "{\"id\":");
	rc |= shim_put_text(b, p->id, strlen(p->id));
	rc |= kiln_buf_printf(b, ",\"status\":\"%s\",\"input\":", shim_status_name(p->status));
	rc |= shim_put_json(b, p->input ? p->input : json_null());
	rc |= kiln_buf_puts(b, ",\"output\":");
	rc |= shim_put_json(b, p->output ? p->output : json_null());
	rc |= kiln_buf_puts(b, ",\"logs\":");
	rc |= shim_put_text(b, p->logs.ptr ? p->logs.ptr : "", p->logs.len);
	rc |= kiln_buf_puts(b, ",\"error\":");
	rc |= p->error ? shim_put_text(b, p->error, strlen(p->error)) : kiln_buf_puts(b, "null");
	rc |= kiln_buf_puts(b, ",\"metrics\":{");
	/* the predictor's own, then predict_time: the runtime's, as in Cog, even when it set one */
	const char *key;
	json_t *v;
	bool first = true;
	json_object_foreach(p->metrics, key, v)
	{
		if (strcmp(key, "predict_time") == 0)
			continue;
		rc |= kiln_buf_puts(b, first ? "" : ",");
		rc |= shim_put_text(b, key, strlen(key));
		rc |= kiln_buf_puts(b, ":");
		rc |= shim_put_json(b, v);
		first = false;
	}
	if (p->predict_time >= 0) {
		char t[32];
		shim_seconds_text(t, p->predict_time);
		rc |= kiln_buf_puts(b, first ? "\"predict_time\":" : ",\"predict_time\":");
		rc |= kiln_buf_puts(b, t);
	}
	rc |= kiln_buf_puts(b, "},\"created_at\":");
	rc |= put_time(b, p->created_at);
	rc |= kiln_buf_puts(b, ",\"started_at\":");
	rc |= put_time(b, p->started_at);
	rc |= kiln_buf_puts(b, ",\"completed_at\":");
	rc |= put_time(b, p->completed_at);
	if (p->webhook) {
		rc |= kiln_buf_puts(b, ",\"webhook\":");
		rc |= shim_put_text(b, p->webhook, strlen(p->webhook));
	}
	if (p->filter) {
		rc |= kiln_buf_puts(b, ",\"webhook_events_filter\":");
		rc |= shim_put_json(b, p->filter);
	}
	rc |= kiln_buf_puts(b, "}");
	return rc ? -1 : 0;
}

json_t *shim_job_json(const struct shim_job *p)
{
	_cleanup_buf_ struct kiln_buf b = KILN_BUF_INIT;
	if (shim_job_text(p, &b) < 0)
		return NULL;
	return json_loadb(b.ptr, b.len, JSON_ALLOW_NUL, NULL);
}
