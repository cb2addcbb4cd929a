/*
 * tls/mbedtls/config.h - wsgate's mbedTLS configuration.
 *
 * tls/mbedtls/build.sh appends this file to the end of the source package's default
 * include/mbedtls/mbedtls_config.h, so each line here changes one default; the installed header
 * is then the only configuration (wsgate, the certs tool, the fuzzers and mbedTLS's own test
 * suites all compile against it: no -D flags to keep in step). Every change says why; the
 * figures were measured on the 2-core AMD EPYC VM of this project (issue 18).
 */

/* ---- What Debian's debian/rules sets (scripts/config.py set ...), kept where we need it ---- */

/* Workers are threads that share the PSA key store, the ticket context and the certificate
 * generations: mbedTLS's global state must be locked. (Debian: THREADING_C, THREADING_PTHREAD.) */
#define MBEDTLS_THREADING_C
#define MBEDTLS_THREADING_PTHREAD
/* Debian also sets CMAC_C, SSL_DTLS_SRTP and DEPRECATED_WARNING: wsgate uses no CMAC, no DTLS,
 * and builds with -Werror, so none of them is set here. */

/* ---- The profile of an edge gateway: TLS over TCP, a server, no debugging in production ---- */

/* Debug messages: 1,900 of the 18,800 instructions per echoed 64 B message were calls into the
 * debug macros of Debian's build (callgrind, make bench-instructions), even with no debug
 * callback set. wsgate never sets a debug callback. */
#undef MBEDTLS_DEBUG_C
/* Self tests are run by `make test` through mbedTLS's own test suites, not at run time. */
#undef MBEDTLS_SELF_TEST
/* No DTLS: wsgate speaks TLS over TCP only. Cookies exist only for DTLS's HelloVerifyRequest. */
#undef MBEDTLS_SSL_PROTO_DTLS
#undef MBEDTLS_SSL_DTLS_ANTI_REPLAY
#undef MBEDTLS_SSL_DTLS_HELLO_VERIFY
#undef MBEDTLS_SSL_DTLS_CLIENT_PORT_REUSE
#undef MBEDTLS_SSL_DTLS_CONNECTION_ID
#undef MBEDTLS_SSL_COOKIE_C
/* MBEDTLS_SSL_RENEGOTIATION stays compiled in: wsgate refuses renegotiation at run time
 * (mbedtls_ssl_conf_renegotiation DISABLED), and testssl.sh checks that answer. */

/* ---- PSA: where the nettle driver plugs in ---- */

/* TLS 1.3 key exchange, record protection and signatures go through PSA only with this (without
 * it, records and signatures take the legacy layers, which no accelerator driver reaches). It
 * also saves 3.4 KB per connection. */
#define MBEDTLS_USE_PSA_CRYPTO
/* mbedTLS copies every PSA input and output buffer unless told that no other thread can see
 * them; wsgate's buffers belong to one connection of one worker. Measured: ~10% on small
 * records (USE_PSA_CRYPTO alone costs small records 6-14% and TLS 1.2 resumption ~20%). */
#define MBEDTLS_PSA_ASSUME_EXCLUSIVE_BUFFERS

/* ---- Left at the default on purpose ---- */
/* MBEDTLS_GCM_LARGE_TABLE: adds 15 KB per AES-GCM connection and buys nothing with AES-NI.
 * MBEDTLS_SSL_OUT_CONTENT_LEN 4096: saves 12 KB per connection but costs 16-22% of bulk
 * throughput and breaks writes above 4095 bytes.
 * MBEDTLS_SSL_VARIABLE_BUFFER_LENGTH: saves nothing for TLS 1.3 in 3.6.6 (the handshake state is
 * kept until mbedtls_ssl_free, and the buffers shrink only when it is freed). */

/* ---- wsgate's PSA accelerator driver on nettle (tls/psa/, wired by tls/mbedtls/patches) ---- */

/* ECDSA P-256 signing, X25519 and P-256 key generation, public key and ECDH, AES-GCM one-shot
 * AEAD run on nettle (libhogweed, libnettle, GMP) instead of mbedTLS's portable C: nettle signs
 * 5x, X25519 7-15x and AES-GCM 6x faster on this machine (bench/nettle_raw). mbedTLS's built-in
 * code stays compiled in as the fallback for every other algorithm and input. The driver
 * object sits inside libmbedcrypto.a, so anything linking it adds -lhogweed -lnettle -lgmp. */
#define WSG_PSA_NETTLE_DRIVER_ENABLED
/* Optional, off until libsodium-dev is in .ci/deps.sh and -lsodium in the link lines: the X25519
 * shared secret on libsodium (28,300/s) instead of nettle (19,900/s). Measured with
 * bench/mbedtls_raw: TLS 1.3 server full handshakes 6,020-6,350 -> 6,620-6,710/s (+7%), ticket
 * resumptions (psk_dhe_ke) 8,240-8,380 -> 9,160-9,580/s (+13%). Key generation stays on nettle,
 * which is faster there. */
/* #define WSG_PSA_SODIUM_X25519 */
