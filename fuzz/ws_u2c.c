/* ws_u2c.c - libFuzzer target: the upstream -> client WebSocket relay (unmasked frames in and out).
 * The harness and its invariants are in ws_relay.h. */
#include "fuzz/ws_relay.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return ws_relay_fuzz(WSG_WS_U2C, data, size);
}
