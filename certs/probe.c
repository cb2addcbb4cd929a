/*
 * probe.c - one real TLS handshake with mbedTLS as a client, to see which certificate a server
 * actually sends for a name (SNI). No verification: the point is to compare the fingerprint of
 * the leaf on the wire with the one rotate just installed.
 */
#include "certs/certs.h"

#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/ssl.h>
#include <psa/crypto.h>

#include "tls/tls.h"

static int is_ip(const char *s)
{
    unsigned char b[16];
    return inet_pton(AF_INET, s, b) == 1 || inet_pton(AF_INET6, s, b) == 1;
}

int wsg_certs_probe(const char *addr, const char *sni, int timeout_ms, char sha256[96], char err[WSG_ERRLEN])
{
    static const unsigned char pers[] = "wsgate-certs probe";
    char why[160];
    int rc = -1, ret, fd = -1;
    sha256[0] = '\0';
    if (psa_crypto_init() != PSA_SUCCESS) {
        snprintf(err, WSG_ERRLEN, "PSA crypto initialisation failed");
        return -1;
    }
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_ssl_config conf;
    mbedtls_ssl_context ssl;
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    mbedtls_ssl_config_init(&conf);
    mbedtls_ssl_init(&ssl);
    const char *step = "seeding the random generator";
    if ((ret = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, pers, sizeof(pers) - 1)) != 0)
        goto mbed_fail;
    step = "client configuration";
    if ((ret = mbedtls_ssl_config_defaults(&conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                           MBEDTLS_SSL_PRESET_DEFAULT)) != 0)
        goto mbed_fail;
    mbedtls_ssl_conf_authmode(&conf, MBEDTLS_SSL_VERIFY_NONE); /* we compare fingerprints instead */
    mbedtls_ssl_conf_rng(&conf, mbedtls_ctr_drbg_random, &drbg);
    if ((ret = mbedtls_ssl_setup(&ssl, &conf)) != 0)
        goto mbed_fail;
    step = "SNI";
    if (sni != NULL && !is_ip(sni) && (ret = mbedtls_ssl_set_hostname(&ssl, sni)) != 0)
        goto mbed_fail;
    if ((fd = wsg_certs_connect(addr, 0, timeout_ms, err)) < 0)
        goto out;
    mbedtls_ssl_set_bio(&ssl, &fd, wsg_certs_bio_send, wsg_certs_bio_recv, NULL);
    step = "handshake";
    do
        ret = mbedtls_ssl_handshake(&ssl);
    while (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE);
    if (ret != 0)
        goto mbed_fail;
    const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(&ssl);
    if (peer == NULL || peer->raw.p == NULL) {
        snprintf(err, WSG_ERRLEN, "%s: the server sent no certificate for %s", addr,
                 sni != NULL ? sni : "(no SNI)");
        goto out;
    }
    wsg_tls_fingerprint_der(peer->raw.p, peer->raw.len, sha256);
    (void)mbedtls_ssl_close_notify(&ssl);
    rc = 0;
    goto out;
mbed_fail:
    mbedtls_strerror(ret, why, sizeof(why));
    snprintf(err, WSG_ERRLEN, "%s: TLS %s for %s failed: %s", addr, step, sni != NULL ? sni : "(no SNI)",
             why);
out:
    if (fd >= 0)
        close(fd);
    mbedtls_ssl_free(&ssl);
    mbedtls_ssl_config_free(&conf);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&entropy);
    return rc;
}
