/*
 * wsgate's PSA transparent accelerator driver backed by nettle (libhogweed, libnettle, GMP).
 *
 * Wired into mbedTLS 3.6 only through its driver mechanism: the `#if defined(WSG_PSA_NETTLE_DRIVER_ENABLED)`
 * blocks that tls/mbedtls/patches add to the wrapper template (sign_hash, generate_key, key_agreement,
 * aead_encrypt, aead_decrypt) and the JSON description tls/mbedtls/patches adds for export_public_key.
 * Entry points have the shapes of 3rdparty/p256-m/p256-m_driver_entrypoints.h (the ones 3.6 calls).
 *
 * Taken over: ECDSA P-256 sign_hash (randomized and deterministic, RFC 6979), X25519 and P-256
 * generate_key / export_public_key / key_agreement (ECDH), AES-GCM (128/192/256) one-shot AEAD.
 * Everything else (and every input this driver does not handle) returns PSA_ERROR_NOT_SUPPORTED
 * so that mbedTLS's built-in code runs, and produces its own canonical error for bad inputs.
 */
#ifndef WSG_PSA_NETTLE_DRIVER_H
#define WSG_PSA_NETTLE_DRIVER_H

#if defined(WSG_PSA_NETTLE_DRIVER_ENABLED)
#ifndef PSA_CRYPTO_ACCELERATOR_DRIVER_PRESENT
#define PSA_CRYPTO_ACCELERATOR_DRIVER_PRESENT
#endif
#endif

#include <psa/crypto_types.h>
#include <stddef.h>
#include <stdint.h>

psa_status_t wsg_nettle_transparent_export_public_key(const psa_key_attributes_t *attributes,
                                                      const uint8_t *key_buffer, size_t key_buffer_size,
                                                      uint8_t *data, size_t data_size, size_t *data_length);

psa_status_t wsg_nettle_transparent_generate_key(const psa_key_attributes_t *attributes, uint8_t *key_buffer,
                                                 size_t key_buffer_size, size_t *key_buffer_length);

psa_status_t wsg_nettle_transparent_key_agreement(const psa_key_attributes_t *attributes,
                                                  const uint8_t *key_buffer, size_t key_buffer_size,
                                                  psa_algorithm_t alg, const uint8_t *peer_key,
                                                  size_t peer_key_length, uint8_t *shared_secret,
                                                  size_t shared_secret_size, size_t *shared_secret_length);

psa_status_t wsg_nettle_transparent_sign_hash(const psa_key_attributes_t *attributes,
                                              const uint8_t *key_buffer, size_t key_buffer_size,
                                              psa_algorithm_t alg, const uint8_t *hash, size_t hash_length,
                                              uint8_t *signature, size_t signature_size,
                                              size_t *signature_length);

psa_status_t wsg_nettle_transparent_aead_encrypt(const psa_key_attributes_t *attributes,
                                                 const uint8_t *key_buffer, size_t key_buffer_size,
                                                 psa_algorithm_t alg, const uint8_t *nonce,
                                                 size_t nonce_length, const uint8_t *additional_data,
                                                 size_t additional_data_length, const uint8_t *plaintext,
                                                 size_t plaintext_length, uint8_t *ciphertext,
                                                 size_t ciphertext_size, size_t *ciphertext_length);

psa_status_t wsg_nettle_transparent_aead_decrypt(const psa_key_attributes_t *attributes,
                                                 const uint8_t *key_buffer, size_t key_buffer_size,
                                                 psa_algorithm_t alg, const uint8_t *nonce,
                                                 size_t nonce_length, const uint8_t *additional_data,
                                                 size_t additional_data_length, const uint8_t *ciphertext,
                                                 size_t ciphertext_length, uint8_t *plaintext,
                                                 size_t plaintext_size, size_t *plaintext_length);

/* What the driver did, counted per thread (no shared cache line on the record path): the number of
 * operations it completed itself (PSA_SUCCESS or a definitive error), not those it handed back with
 * PSA_ERROR_NOT_SUPPORTED. For tests that must prove the driver is the code path taken. */
enum wsg_psa_nettle_op {
    WSG_PSA_NETTLE_SIGN_HASH,
    WSG_PSA_NETTLE_GENERATE_KEY,
    WSG_PSA_NETTLE_EXPORT_PUBLIC_KEY,
    WSG_PSA_NETTLE_KEY_AGREEMENT,
    WSG_PSA_NETTLE_AEAD_ENCRYPT,
    WSG_PSA_NETTLE_AEAD_DECRYPT,
    WSG_PSA_NETTLE_OPS
};

/** @return how many operations of kind @p op the driver has completed on the calling thread. */
unsigned long wsg_psa_nettle_calls(enum wsg_psa_nettle_op op);

#endif /* WSG_PSA_NETTLE_DRIVER_H */
