/* SPDX-License-Identifier: Apache-2.0 */
/* deploy_out.c: what kiln deploy writes: YAML streams (through libyaml's emitter) and systemd units. */
#include "pkg/deploy.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

/* ---- YAML ---- */

static int buf_write(void *data, unsigned char *bytes, size_t size)
{
	return kiln_buf_put(data, bytes, size) == 0;
}

/* Whether S, written plain, would be read by YAML 1.1 or 1.2 as something else than this string: empty,
 * a number ("1", "-2", ".5", "0x1f", "1e3"), null, a boolean ("yes", "off", "y"), or spaces at its ends. */
static bool needs_quotes(const char *s)
{
	static const char *const words[] = {"null", "true", "false", "yes", "no", "on", "off", "y", "n", "~"};
	size_t n = strlen(s);
	if (n == 0 || isspace((unsigned char)s[0]) || isspace((unsigned char)s[n - 1]))
		return true;
	if (isdigit((unsigned char)s[0]) ||
	    ((s[0] == '-' || s[0] == '+' || s[0] == '.') && n > 1 &&
	     (isdigit((unsigned char)s[1]) || s[1] == '.' || isalpha((unsigned char)s[1]))))
		return true; /* numbers, and .inf/.nan/-.inf; over-quoting a word such as "-x" is harmless */
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strcasecmp(s, words[i]) == 0)
			return true;
	return false;
}

static int scalar(yaml_emitter_t *e, const char *text, bool quote)
{
	yaml_event_t ev;
	yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)text, (int)strlen(text), 1, 1,
	                             quote ? YAML_DOUBLE_QUOTED_SCALAR_STYLE : YAML_ANY_SCALAR_STYLE);
	return yaml_emitter_emit(e, &ev) ? 0 : -1;
}

/* V as a YAML node; empty lists and maps in flow style ([] and {}). */
static int node(yaml_emitter_t *e, const json_t *v)
{
	yaml_event_t ev;
	char text[64];
	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		const char *key;
		json_t *item;
		yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1,
		                                    json_object_size(v) ? YAML_BLOCK_MAPPING_STYLE
		                                                        : YAML_FLOW_MAPPING_STYLE);
		if (!yaml_emitter_emit(e, &ev))
			return -1;
		json_object_foreach((json_t *)v, key, item)
		{
			if (scalar(e, key, needs_quotes(key)) < 0 || node(e, item) < 0)
				return -1;
		}
		yaml_mapping_end_event_initialize(&ev);
		return yaml_emitter_emit(e, &ev) ? 0 : -1;
	}
	case JSON_ARRAY: {
		size_t i;
		json_t *item;
		yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
		                                     json_array_size(v) ? YAML_BLOCK_SEQUENCE_STYLE
		                                                        : YAML_FLOW_SEQUENCE_STYLE);
		if (!yaml_emitter_emit(e, &ev))
			return -1;
		json_array_foreach(v, i, item)
		{
			if (node(e, item) < 0)
				return -1;
		}
		yaml_sequence_end_event_initialize(&ev);
		return yaml_emitter_emit(e, &ev) ? 0 : -1;
	}
	case JSON_STRING:
		return scalar(e, json_string_value(v), needs_quotes(json_string_value(v)));
	case JSON_INTEGER:
		snprintf(text, sizeof(text), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return scalar(e, text, false);
	case JSON_REAL:
		snprintf(text, sizeof(text), "%.17g", json_real_value(v));
		return scalar(e, text, false);
	case JSON_TRUE:
		return scalar(e, "true", false);
	case JSON_FALSE:
		return scalar(e, "false", false);
	case JSON_NULL:
		return scalar(e, "null", false);
	}
	return -1;
}

int kiln_deploy_yaml(struct kiln_buf *out, const json_t *docs, struct kiln_error **err)
{
	yaml_emitter_t e;
	yaml_event_t ev;
	if (!yaml_emitter_initialize(&e))
		return kiln_error_set(err, KILN_EFAIL, "cannot write YAML: out of memory");
	yaml_emitter_set_output(&e, buf_write, out);
	yaml_emitter_set_unicode(&e, 1);
	yaml_emitter_set_indent(&e, 2);
	yaml_emitter_set_width(&e, -1); /* no folded lines */
	int ok = 1;
	yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
	ok = yaml_emitter_emit(&e, &ev);
	size_t i;
	json_t *doc;
	json_array_foreach(docs, i, doc)
	{
		if (!ok)
			break;
		yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, i == 0);
		ok = yaml_emitter_emit(&e, &ev) && node(&e, doc) == 0;
		yaml_document_end_event_initialize(&ev, 1);
		ok = ok && yaml_emitter_emit(&e, &ev);
	}
	if (ok) {
		yaml_stream_end_event_initialize(&ev);
		ok = yaml_emitter_emit(&e, &ev) && yaml_emitter_flush(&e);
	}
	if (!ok)
		kiln_error_set(err, KILN_EFAIL, "cannot write YAML: %s",
		               e.problem ? e.problem : "out of memory");
	yaml_emitter_delete(&e);
	return ok ? 0 : KILN_EFAIL;
}

/* ---- systemd ---- */

/*
 * S as one word of a unit file's value (systemd.syntax(7)): '%' doubled (a specifier otherwise), and in
 * double quotes with '\' and '"' escaped when it has a space, a quote or a backslash; in ExecStart (EXEC)
 * '$' doubled too (a variable otherwise).
 */
static void unit_word(struct kiln_buf *b, const char *s, bool exec)
{
	bool quote = *s == '\0' || strpbrk(s, " \t\"'\\;") != NULL;
	if (quote)
		kiln_buf_puts(b, "\"");
	for (; *s; s++) {
		if (*s == '%' || (exec && *s == '$'))
			kiln_buf_put(b, s, 1);
		else if (quote && (*s == '\\' || *s == '"'))
			kiln_buf_puts(b, "\\");
		kiln_buf_put(b, s, 1);
	}
	if (quote)
		kiln_buf_puts(b, "\"");
}

static void environment(struct kiln_buf *b, const char *name, const char *value)
{
	struct kiln_buf kv = KILN_BUF_INIT;
	kiln_buf_printf(&kv, "%s=%s", name, value);
	kiln_buf_puts(b, "Environment=");
	unit_word(b, kv.ptr, false);
	kiln_buf_puts(b, "\n");
	kiln_buf_release(&kv);
}

int kiln_deploy_systemd(char **socket_out, char **service_out, const struct kiln_deploy_hints *h,
                        const struct kiln_deploy_options *o, json_t *warnings, struct kiln_error **err)
{
	struct kiln_buf sock = KILN_BUF_INIT, svc = KILN_BUF_INIT;
	long port = o->port >= 0 ? o->port : KILN_DEPLOY_PORT;
	kiln_buf_printf(&sock,
	                "# %s.socket: made by kiln deploy from %s\n"
	                "[Unit]\nDescription=kiln: %s (socket)\n\n"
	                "[Socket]\nListenStream=%ld\nAccept=no\n\n"
	                "[Install]\nWantedBy=sockets.target\n",
	                o->name, o->image, o->name, port);
	kiln_buf_printf(
	    &svc,
	    "# %s.service: made by kiln deploy from %s, started by %s.socket\n"
	    "[Unit]\nDescription=kiln: %s\nRequires=%s.socket\nAfter=%s.socket network-online.target\n"
	    "Wants=network-online.target\n\n[Service]\nType=simple\n",
	    o->name, o->image, o->name, o->name, o->name, o->name);
	environment(&svc, "KILN_HOME", o->home);
	char n[32];
	if (o->setup_timeout >= 0) {
		snprintf(n, sizeof(n), "%ld", o->setup_timeout);
		environment(&svc, "COG_SETUP_TIMEOUT", n);
	}
	kiln_buf_puts(&svc, "ExecStart=");
	unit_word(&svc, o->kiln, true);
	kiln_buf_puts(&svc, " serve ");
	unit_word(&svc, o->image, true);
	if (h->min_instances >= 1) {
		kiln_deploy_warn(
		    warnings,
		    "min_instances %ld: the service is started by the first request and then kept running "
		    "(no --idle-exit)",
		    h->min_instances);
	} else {
		long idle = h->scaledown_window > 0 ? h->scaledown_window : KILN_DEPLOY_IDLE_EXIT;
		if (h->scaledown_window <= 0)
			kiln_deploy_warn(
			    warnings, "no scaledown_window: the service exits after %ld s without a request",
			    idle);
		kiln_buf_printf(&svc, " --idle-exit %ld", idle);
	}
	kiln_buf_puts(&svc, "\nRestart=on-failure\nRestartSec=5\nTimeoutStopSec=30\n");
	if (h->max_instances > 1)
		kiln_deploy_warn(warnings,
		                 "max_instances %ld: a systemd service is one instance on one machine",
		                 h->max_instances);
	if (!sock.ptr || !svc.ptr) {
		kiln_buf_release(&sock);
		kiln_buf_release(&svc);
		return kiln_error_set(err, KILN_EFAIL, "cannot write the units: out of memory");
	}
	*socket_out = kiln_buf_detach(&sock);
	*service_out = kiln_buf_detach(&svc);
	return 0;
}
