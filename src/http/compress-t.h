/* SPDX-License-Identifier: MIT */
/* Response compression: the content codings portico can apply, their settings per level, and
 * the state of one compressing response. */
#ifndef PT_COMPRESS_T_H
#define PT_COMPRESS_T_H

#include <stddef.h>
#include <stdint.h>

/* Content codings (RFC 9110 section 8.4.1), in the order portico prefers them when a client
 * accepts several with the same q-value: zstd, then br, then gzip (docs/compression.md says
 * why). */
enum pt_coding {
    PT_CODING_IDENTITY = 0,
    PT_CODING_ZSTD,
    PT_CODING_BR,
    PT_CODING_GZIP,
    PT_CODING__COUNT,
};

/* The compression settings of one level (main, server, location), inherited main -> server ->
 * location; PT_UNSET until merged. Owner: the snapshot arena. */
struct pt_compress_conf {
    int on[PT_CODING__COUNT]; /* gzip / brotli / zstd on|off, by coding ([IDENTITY] unused) */
    int vary;                 /* gzip_vary: Vary: Accept-Encoding on compressible responses */
    int64_t min_length;       /* gzip_min_length: smaller known lengths are sent as they are */
    int64_t level[PT_CODING__COUNT]; /* gzip_comp_level, brotli_comp_level, zstd_comp_level */
    const char **types;       /* gzip_types, lower case ("text/html" always matches) */
    int n_types;              /* PT_UNSET until set */
    unsigned any_type : 1;    /* gzip_types * */
};

/* What a request's Accept-Encoding fields say (RFC 9110 section 12.5.3): the q-value of each
 * coding portico knows and of "*", in thousandths; -1 where the field does not mention it. */
struct pt_accept_encoding {
    int q[PT_CODING__COUNT]; /* [PT_CODING_IDENTITY] is "identity" */
    int star;
    unsigned present : 1;    /* at least one Accept-Encoding field */
};

#endif
