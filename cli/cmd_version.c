/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_version.c: `kiln version`: kiln's version and the versions of the libraries it runs with. */
#include "cli/cli.h"
#include "kiln_version.h"

#include <archive.h>
#include <curl/curlver.h>
#include <git2.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>
#include <zlib.h>

int cmd_version(int argc, char **argv)
{
	bool json = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = true;
		else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return cli_help("version");
		else
			return cli_usage_error("unknown option '%s'", argv[i]);
	}
	int gmaj, gmin, grev;
	git_libgit2_version(&gmaj, &gmin, &grev);
	char git[32];
	snprintf(git, sizeof(git), "%d.%d.%d", gmaj, gmin, grev);
	if (json) {
		json_t *j = json_pack("{s:s,s:{s:s,s:s,s:s,s:s,s:s,s:s,s:s}}", "version", KILN_VERSION, "libraries",
				      "libarchive", archive_version_details(), "libgit2", git, "libyaml",
				      yaml_get_version_string(), "jansson", JANSSON_VERSION, "openssl",
				      OpenSSL_version(OPENSSL_VERSION), "libcurl", LIBCURL_VERSION, "zlib", zlibVersion());
		json_dumpf(j, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
		json_decref(j);
	} else {
		printf("kiln %s\n", KILN_VERSION);
	}
	return EXIT_OK;
}
