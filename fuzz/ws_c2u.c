/* ws_c2u.c - libFuzzer target: the client -> upstream WebSocket relay (masked frames in, re-masked
 * frames out). The harness and its invariants are in ws_relay.h. */
#include "fuzz/ws_relay.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return ws_relay_fuzz(WSG_WS_C2U, data, size);
}
