/* SPDX-License-Identifier: Apache-2.0 */
/*
 * playground.h: kiln's web playground. A page built into kiln (playground/, no CDN) that makes a form of
 * a model's /openapi.json and shows what the model answers; the playground's server proxies Cog's API of
 * one target (nothing else: no open proxy) under /api/, and keeps the webhooks the target sends to
 * /playground/webhook for the page to show.
 */
#ifndef KILN_PLAYGROUND_H
#define KILN_PLAYGROUND_H

#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"

/* One file of the page (playground_assets.c, made by cmake/embed.cmake). */
struct kiln_asset {
	const char *path; /* "/index.html" */
	const unsigned char *data;
	size_t len;
};
extern const struct kiln_asset kiln_playground_assets[]; /* ended by a NULL path */

struct kiln_playground_options {
	const char *target; /* the model's base URL: http(s)://HOST[:PORT][/PATH] */
	const char *host;   /* the address the playground listens on (default 127.0.0.1) */
	long port;          /* 0: a free one */
	const char *ref;    /* what the page's kiln predict line names (an image or a project), or NULL */
	const char
	    *webhook_base; /* the playground's URL as the target reaches it (default: the listen one) */
};

/* Whether URL is a target the playground takes (http or https, a host, no query, fragment or user). */
bool kiln_playground_target_valid(const char *url);

/* Whether the page's API path P (after "/api/") is one the proxy forwards: openapi.json, health-check,
 * predictions and trainings, one of them by id, or its cancel. */
bool kiln_playground_path_allowed(const char *p);

struct kiln_playground;
/* Start the playground's server (its own threads). *URL is where it listens (the caller frees it). */
int kiln_playground_start(struct kiln_playground **out, char **url, const struct kiln_playground_options *o,
                          struct kiln_error **err);
void kiln_playground_stop(struct kiln_playground *pg);

#endif
