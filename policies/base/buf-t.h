/* buf-t.h - the byte buffer type, for structs that embed it by value (base layer, policies/base/). */
#ifndef WSG_BUF_T_H
#define WSG_BUF_T_H

#include <stdint.h>

/* A fixed-capacity linear sliding buffer. Zeroed = empty and unallocated (memory is taken on the
 * first reserve and may be given back when empty). Bytes live at base+head .. base+head+len. */
struct wsg_buf {
    uint8_t *base;
    uint32_t cap, head, len;
    uint32_t hiwat, lowat; /* stop the producer at or above hiwat, resume at or below lowat */
};

#endif
