/* SPDX-License-Identifier: Apache-2.0 */
/*
 * auth.h: registry credentials as Docker keeps them: config.json (auths, credHelpers, credsStore through
 * docker-credential-<name>), $DOCKER_CONFIG, REGISTRY_AUTH_FILE, and KILN_REGISTRY_USERNAME /
 * KILN_REGISTRY_PASSWORD for CI. Secrets never go into messages.
 */
#ifndef KILN_REGISTRY_AUTH_H
#define KILN_REGISTRY_AUTH_H

#include "common/error.h"

struct kiln_credentials {
	char *username;
	char *secret; /* password or identity token */
};

/* The key Docker uses for HOST in config.json ("https://index.docker.io/v1/" for Docker Hub). */
const char *kiln_auth_config_key(const char *host);

/* Credentials for HOST; both fields NULL when none are configured (not an error). */
int kiln_auth_get(struct kiln_credentials *out, const char *host, struct kiln_error **err);

/* `kiln login`: store credentials for HOST (the credential helper if one is configured for it, else
 * config.json's auths, written atomically with mode 0600). */
int kiln_auth_store(const char *host, const struct kiln_credentials *cred, struct kiln_error **err);

/* `kiln logout`: remove HOST's credentials (KILN_ENOTFOUND when there were none). */
int kiln_auth_erase(const char *host, struct kiln_error **err);

/* The config file kiln reads and writes: REGISTRY_AUTH_FILE, else $DOCKER_CONFIG/config.json, else
 * ~/.docker/config.json. Caller frees. */
char *kiln_auth_config_path(void);

void kiln_credentials_release(struct kiln_credentials *c);

#endif
