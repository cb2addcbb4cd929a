/*
 * err.h - return codes, the error-buffer size and small helpers shared by every module.
 *
 * Part of the base layer (policies/base/: below every module, see docs/ARCHITECTURE.md).
 * Leaf header: includes nothing of the project. Byte movers return ssize_t (>0 bytes moved, else
 * a WSG_* code); pipeline stages return >0 progress / 0 nothing; boot-time functions take
 * char err[WSG_ERRLEN] and return 0 or -1.
 */
#ifndef WSG_ERR_H
#define WSG_ERR_H

#include <stddef.h>

enum { WSG_OK = 0, WSG_AGAIN = -1, WSG_EOF = -2, WSG_ERR = -3 };

/* Parser contract (picohttpparser): >0 bytes consumed, or one of these. */
enum { WSG_PARSE_INVALID = -1, WSG_PARSE_PARTIAL = -2 };

#define WSG_ERRLEN 256
#define WSG_UNUSED(x) ((void)(x))
#define WSG_MUST_CHECK __attribute__((warn_unused_result))

#ifndef container_of
#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))
#endif

#endif
