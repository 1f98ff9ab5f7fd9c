/* SPDX-License-Identifier: Apache-2.0 */
/* source.c: revision, dirty state and source URL of the project, read with libgit2. */
#include "pkg/source.h"
#include "common/cleanup.h"

#include <git2.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "https://user:token@host/x" → "https://host/x": credentials never go into a label. */
static char *strip_credentials(const char *url)
{
	const char *scheme = strstr(url, "://");
	const char *host = scheme ? scheme + 3 : url;
	const char *at = strchr(host, '@');
	const char *slash = strchr(host, '/');
	if (at == NULL || (slash && at > slash) || scheme == NULL)
		return strdup(url);
	char *out = NULL;
	if (asprintf(&out, "%.*s%s", (int)(host - url), url, at + 1) < 0)
		return NULL;
	return out;
}

static int git_fail(struct kiln_error **err, const char *what, const char *dir)
{
	const git_error *ge = git_error_last();
	return kiln_error_set(err, KILN_EFAIL, "cannot read git %s of '%s': %s", what, dir,
	                      ge && ge->message ? ge->message : "unknown error");
}

int kiln_source_describe(struct kiln_source *out, const char *dir, struct kiln_error **err)
{
	memset(out, 0, sizeof(*out));
	git_libgit2_init();
	git_repository *repo = NULL;
	int rc = 0;
	if (git_repository_open_ext(&repo, dir, 0, NULL) < 0)
		goto cleanup; /* not a repository: nothing to say */
	git_oid oid;
	if (git_reference_name_to_id(&oid, repo, "HEAD") < 0)
		goto cleanup; /* no commit yet */
	char hex[GIT_OID_HEXSZ + 1];
	git_oid_tostr(hex, sizeof(hex), &oid);

	/* Pathspec: the project directory relative to the work tree, so other folders don't count. */
	const char *workdir = git_repository_workdir(repo);
	char real[PATH_MAX];
	const char *rel = NULL;
	if (workdir && realpath(dir, real)) {
		size_t wl = strlen(workdir);
		if (strncmp(real, workdir, wl) == 0)
			rel = real + wl;
		else if (wl > 0 && strncmp(real, workdir, wl - 1) == 0 && real[wl - 1] == '\0')
			rel = "";
	}
	git_status_options so;
	git_status_options_init(&so, GIT_STATUS_OPTIONS_VERSION);
	so.show = GIT_STATUS_SHOW_INDEX_AND_WORKDIR;
	so.flags = GIT_STATUS_OPT_EXCLUDE_SUBMODULES;
	char *specs[1] = {(char *)rel};
	if (rel && *rel) {
		so.pathspec.strings = specs;
		so.pathspec.count = 1;
	}
	git_status_list *st = NULL;
	if (git_status_list_new(&st, repo, &so) < 0) {
		rc = git_fail(err, "status", dir);
		goto cleanup;
	}
	bool dirty = git_status_list_entrycount(st) > 0;
	git_status_list_free(st);
	if (asprintf(&out->revision, "%s%s", hex, dirty ? "-dirty" : "") < 0)
		out->revision = NULL;

	git_remote *remote = NULL;
	if (git_remote_lookup(&remote, repo, "origin") == 0) {
		const char *url = git_remote_url(remote);
		if (url)
			out->url = strip_credentials(url);
		git_remote_free(remote);
	}
cleanup:
	git_repository_free(repo);
	git_libgit2_shutdown();
	return rc;
}

void kiln_source_release(struct kiln_source *src)
{
	free(src->revision);
	free(src->url);
	src->revision = src->url = NULL;
}
