/* SPDX-License-Identifier: Apache-2.0 */
/*
 * extract.h: safe extraction of one tar layer (plain, gzip or zstd) into a directory with libarchive,
 * applying OCI whiteouts and refusing every entry that would reach outside the directory.
 *
 * The rules, as containerd and umoci apply them:
 *  - names are made relative: a leading '/' is dropped (as tar, containerd and umoci do) and '.'
 *    components and repeated '/' are removed; a name with a '..' component is refused;
 *  - an entry whose path goes through a symbolic link already on disk is refused, whatever the link
 *    points at (layers made by diffing a filesystem never hold one); an existing link in the entry's
 *    own place is replaced, never followed;
 *  - hard links must name an existing non-directory inside the directory (same rules as names);
 *  - symbolic links are written as they are: their targets mean something inside the image's root and
 *    are never followed while extracting;
 *  - ".wh.NAME" removes NAME of lower layers, ".wh..wh..opq" empties its directory of what lower layers
 *    put there (the layer's own entries stay, in whatever order they come); neither is written, and
 *    other ".wh..wh." names (aufs metadata) are skipped;
 *  - a hard link entry that carries data (pax allows it) is refused: its data would go into the file
 *    linked to, which may be shared with another root (see kiln_layer_link);
 *  - block and character devices and sockets are skipped and counted;
 *  - permissions and modification times are restored, less what would hand an image's privileges to
 *    this machine's users: no setuid or setgid bit, no write permission for others, and the sticky bit
 *    only on a directory its group may write (kiln_extract_host_mode). Ownership is never restored, even
 *    as root: every file belongs to the user who extracts. An image's uids name nobody here, and a file
 *    given to one would be that local user's to change in a root that kiln later runs; bubblewrap runs
 *    the root read-only with no new privileges, so no bit stripped here would have worked there;
 *  - a layer may not expand to more than KILN_EXTRACT_RATIO times its blob's size plus
 *    KILN_EXTRACT_FLOOR, counting 512 bytes and the apparent size of each entry (a sparse file counts in
 *    full) before the entry is written.
 */
#ifndef KILN_EXTRACT_H
#define KILN_EXTRACT_H

#include <signal.h>
#include <stdint.h>

#include "common/error.h"
#include "layers/reader.h"

/* How far a layer may expand (see above): 100 times its blob's size, plus 256 MiB. */
#define KILN_EXTRACT_RATIO 100
#define KILN_EXTRACT_FLOOR (256ULL << 20)

enum kiln_extract_filter {
	KILN_EXTRACT_TAR,  /* plain tar */
	KILN_EXTRACT_GZIP, /* gzip, or plain tar (told apart by their first bytes) */
	KILN_EXTRACT_ZSTD, /* zstd, or plain tar */
};

struct kiln_extract_stats {
	uint64_t entries;    /* entries read, whiteouts and skipped ones included */
	uint64_t files;      /* regular files written */
	uint64_t dirs;       /* directories written */
	uint64_t symlinks;   /* symbolic links written */
	uint64_t hardlinks;  /* hard links made */
	uint64_t others;     /* FIFOs written */
	uint64_t whiteouts;  /* whiteouts and opaque markers applied */
	uint64_t skipped;    /* device nodes and sockets not written */
	uint64_t bytes;      /* bytes written to regular files */
	uint64_t blob_bytes; /* bytes of the blob read */
};

struct kiln_extract_options {
	enum kiln_extract_filter filter;
	/* Called after each piece of the blob is read, with its size (may be NULL). */
	void (*progress)(void *ctx, uint64_t bytes);
	void *progress_ctx;
	volatile sig_atomic_t *cancel; /* when non-NULL and set, stop with KILN_EINTR */
	uint64_t max_expanded;         /* the most the layer may expand to; 0: the rule above */
};

/*
 * Extract the layer read from RD into DIR, an existing directory that holds the layers below (or
 * nothing). When DIGEST is non-NULL the blob's bytes, read to the end, must have that digest
 * (KILN_EIO otherwise); NULL leaves the check to RD (a recipe's reader makes it). The statistics are
 * added to *st (may be NULL). An entry that breaks a rule above fails with KILN_EINVAL naming it.
 *
 * Nothing is ever written or removed outside DIR, but on failure DIR may hold part of the layer, and
 * the digest is known only at the end: extract into a directory that is discarded on failure.
 * DIR must not change under the call (another process could then redirect its writes).
 */
int kiln_layer_extract(struct kiln_blob_reader *rd, const char *digest, const char *dir,
                       const struct kiln_extract_options *opt, struct kiln_extract_stats *st,
                       struct kiln_error **err);

/*
 * Put the tree FROM, a layer extracted on its own into an empty directory by kiln_layer_extract, into
 * DIR as that layer's entries would be put there: its directories made where DIR has none (with FROM's
 * mode and times; DIR's own keep theirs), a non-directory in their place replaced, its files hard-linked
 * and its symbolic links copied, each replacing whatever DIR has in its place (a directory with all it
 * holds). Every change is made by name in a directory of DIR opened without following a link: DIR's
 * symbolic links are replaced, never followed, and nothing outside DIR is reached. The counts are added
 * to *st (may be NULL). The layer's whiteouts are not in FROM: a layer that has some cannot be put in
 * place this way. FROM's files with a mode kiln_extract_host_mode would not give (an older kiln's) lose
 * those bits. FROM and DIR must be on one filesystem and must not change under the call.
 */
int kiln_layer_link(const char *from, const char *dir, struct kiln_extract_stats *st,
                    struct kiln_error **err);

/* Add the counts of B to A. */
void kiln_extract_stats_add(struct kiln_extract_stats *a, const struct kiln_extract_stats *b);

/* rm -rf PATH, emptying read-only directories too (a layer may make some); a missing PATH is fine. */
int kiln_extract_remove(const char *path, struct kiln_error **err);

#endif
