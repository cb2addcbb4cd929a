/*
 * gen.c - `wsgate-certs gen`: an ECDSA P-256 key and a certificate with subjectAltName entries
 * (DNS names, wildcards, IPv4/IPv6 addresses), self-signed (through tls/'s generator, the one the
 * gateway uses for its embedded default) or signed by a CA: a development CA that gen creates
 * (--ca-out DIR) or an existing one (--ca CERT KEY).
 *
 * A CA gets basicConstraints CA:TRUE (pathlen 0) and keyCertSign|cRLSign; a leaf CA:FALSE,
 * digitalSignature, extendedKeyUsage serverAuth. Both carry subject/authority key identifiers
 * (RFC 5280 4.2.1.1-2) so that path builders match issuer and leaf by key, not only by name.
 * Every file is written atomically; keys with mode 0600.
 */
#include "certs/certs.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/asn1.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/x509.h>
#include <mbedtls/x509_crt.h>
#include <psa/crypto.h>

#include "tls/tls.h"

#define GEN_SYNOPSIS                                                                                         \
    "usage: wsgate-certs gen --name NAME [--name NAME]... [--days N] [--ca-out DIR | --ca CERT KEY]\n"       \
    "                        OUT_CERT OUT_KEY\n"

static const char gen_usage[] = GEN_SYNOPSIS
    "  Writes an ECDSA P-256 key (mode 0600) and a certificate for the names, atomically.\n"
    "  --name NAME     a DNS name, a wildcard (*.example.com) or an IPv4/IPv6 address; the first\n"
    "                  is also the subject CN. Repeat for more names.\n"
    "  --days N        validity of the certificate in days (default 90)\n"
    "  --ca-out DIR    also create a development CA, DIR/ca.pem and DIR/ca.key (valid 10 years),\n"
    "                  and sign with it; clients trust DIR/ca.pem. Refuses to overwrite a CA.\n"
    "  --ca CERT KEY   sign with an existing CA instead\n"
    "  Without --ca-out or --ca the certificate is self-signed (clients trust OUT_CERT itself).\n";

enum { CERT_CAP = 64 * 1024, KEY_CAP = 4096 };

#define SERVER_AUTH_OID MBEDTLS_OID_SERVER_AUTH

static const char *mbed_text(int ret, char *buf, size_t len)
{
    mbedtls_strerror(ret, buf, len);
    return buf;
}

static int dns_label_ok(const char *s, size_t len)
{
    if (len == 0 || len > 63 || s[0] == '-' || s[len - 1] == '-')
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'))
            return 0;
    }
    return 1;
}

int wsg_certs_name_ok(const char *name, const char **why)
{
    unsigned char ip[16];
    *why = NULL;
    if (inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1)
        return 1;
    size_t len = strlen(name);
    if (len == 0) {
        *why = "is empty";
        return 0;
    }
    if (len > 253) {
        *why = "is longer than 253 characters";
        return 0;
    }
    if (name[len - 1] == '.') {
        *why = "ends with a dot (write it without)";
        return 0;
    }
    const char *p = name;
    if (p[0] == '*' && p[1] == '.')
        p += 2; /* a wildcard is the whole first label, nothing else (RFC 6125 6.4.3) */
    if (strchr(p, '*') != NULL) {
        *why = "has a wildcard other than a whole first label (*.example.com)";
        return 0;
    }
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t l = dot != NULL ? (size_t)(dot - p) : strlen(p);
        if (!dns_label_ok(p, l)) {
            *why = "is not a DNS name or an IP address (letters, digits, '-' and dots)";
            return 0;
        }
        if (dot == NULL)
            return 1;
        p = dot + 1;
    }
}

/* Who signs: a key, its subject as a string, and its subject key identifier when it has one. */
struct signer {
    mbedtls_pk_context *key;
    const char *name;
    const unsigned char *key_id; /* NULL: derive from the key */
    size_t key_id_len;
};

/* What to certify. */
struct cert_spec {
    mbedtls_pk_context *key;
    const char *subject;
    unsigned days;
    int is_ca;
    const char *const *names; /* leaf only */
    size_t nnames;
};

static int write_cert(mbedtls_ctr_drbg_context *drbg, const struct cert_spec *c, const struct signer *s,
                      unsigned char *pem, size_t cap, char err[WSG_ERRLEN])
{
    char text[160], from[16], to[16];
    unsigned char serial[16];
    int ret = 0, rc = -1;
    const char *what = "";
    mbedtls_x509write_cert crt;
    mbedtls_x509_san_list *san = NULL;
    unsigned char(*ip)[16] = NULL;
    mbedtls_x509write_crt_init(&crt);
#define STEP(name, call)                                                                                     \
    do {                                                                                                     \
        what = (name);                                                                                       \
        if ((ret = (call)) != 0)                                                                             \
            goto out;                                                                                        \
    } while (0)

    time_t now = time(NULL);
    what = "validity";
    if (wsg_tls_utc_stamp(now - 3600, from) != 0 || wsg_tls_utc_stamp(now + (time_t)c->days * 86400, to) != 0)
        goto out;
    STEP("serial", mbedtls_ctr_drbg_random(drbg, serial, sizeof(serial)));
    serial[0] = (unsigned char)((serial[0] & 0x7f) | 0x40); /* positive, no leading zero byte */
    mbedtls_x509write_crt_set_version(&crt, MBEDTLS_X509_CRT_VERSION_3);
    mbedtls_x509write_crt_set_md_alg(&crt, MBEDTLS_MD_SHA256);
    mbedtls_x509write_crt_set_subject_key(&crt, c->key);
    mbedtls_x509write_crt_set_issuer_key(&crt, s->key);
    STEP("subject", mbedtls_x509write_crt_set_subject_name(&crt, c->subject));
    STEP("issuer", mbedtls_x509write_crt_set_issuer_name(&crt, s->name));
    STEP("serial", mbedtls_x509write_crt_set_serial_raw(&crt, serial, sizeof(serial)));
    STEP("validity", mbedtls_x509write_crt_set_validity(&crt, from, to));
    STEP("subject key identifier", mbedtls_x509write_crt_set_subject_key_identifier(&crt));
    if (s->key_id != NULL) {
        /* AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT OCTET STRING } */
        unsigned char aki[2 + 2 + 64];
        what = "authority key identifier";
        if (s->key_id_len > 64)
            goto out;
        aki[0] = MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE;
        aki[1] = (unsigned char)(2 + s->key_id_len);
        aki[2] = MBEDTLS_ASN1_CONTEXT_SPECIFIC | 0;
        aki[3] = (unsigned char)s->key_id_len;
        memcpy(aki + 4, s->key_id, s->key_id_len);
        STEP("authority key identifier",
             mbedtls_x509write_crt_set_extension(&crt, MBEDTLS_OID_AUTHORITY_KEY_IDENTIFIER,
                                                 MBEDTLS_OID_SIZE(MBEDTLS_OID_AUTHORITY_KEY_IDENTIFIER), 0,
                                                 aki, 4 + s->key_id_len));
    } else {
        STEP("authority key identifier", mbedtls_x509write_crt_set_authority_key_identifier(&crt));
    }
    if (c->is_ca) {
        STEP("basic constraints", mbedtls_x509write_crt_set_basic_constraints(&crt, 1, 0));
        STEP("key usage", mbedtls_x509write_crt_set_key_usage(&crt, MBEDTLS_X509_KU_KEY_CERT_SIGN |
                                                                        MBEDTLS_X509_KU_CRL_SIGN));
    } else {
        STEP("basic constraints", mbedtls_x509write_crt_set_basic_constraints(&crt, 0, -1));
        STEP("key usage", mbedtls_x509write_crt_set_key_usage(&crt, MBEDTLS_X509_KU_DIGITAL_SIGNATURE));
        mbedtls_asn1_sequence eku;
        memset(&eku, 0, sizeof(eku));
        eku.buf.tag = MBEDTLS_ASN1_OID;
        eku.buf.p = (unsigned char *)SERVER_AUTH_OID;
        eku.buf.len = MBEDTLS_OID_SIZE(SERVER_AUTH_OID);
        STEP("extended key usage", mbedtls_x509write_crt_set_ext_key_usage(&crt, &eku));
        what = "subjectAltName";
        san = calloc(c->nnames, sizeof(*san));
        ip = calloc(c->nnames, sizeof(*ip));
        if (san == NULL || ip == NULL) {
            ret = MBEDTLS_ERR_X509_ALLOC_FAILED;
            goto out;
        }
        for (size_t i = 0; i < c->nnames; i++) {
            mbedtls_x509_subject_alternative_name *node = &san[i].node;
            mbedtls_x509_buf *v = &node->san.unstructured_name;
            if (inet_pton(AF_INET, c->names[i], ip[i]) == 1) {
                node->type = MBEDTLS_X509_SAN_IP_ADDRESS;
                v->p = ip[i];
                v->len = 4;
            } else if (inet_pton(AF_INET6, c->names[i], ip[i]) == 1) {
                node->type = MBEDTLS_X509_SAN_IP_ADDRESS;
                v->p = ip[i];
                v->len = 16;
            } else {
                node->type = MBEDTLS_X509_SAN_DNS_NAME;
                v->p = (unsigned char *)(uintptr_t)c->names[i];
                v->len = strlen(c->names[i]);
            }
            san[i].next = i != 0 ? &san[i - 1] : NULL;
        }
        /* mbedTLS writes the list back to front: hand it reversed to keep the names' order. */
        STEP("subjectAltName", mbedtls_x509write_crt_set_subject_alternative_name(&crt, &san[c->nnames - 1]));
    }
    STEP("writing PEM", mbedtls_x509write_crt_pem(&crt, pem, cap, mbedtls_ctr_drbg_random, drbg));
#undef STEP
    rc = 0;
out:
    if (rc != 0) {
        if (ret != 0)
            snprintf(err, WSG_ERRLEN, "certificate for %s: %s: %s", c->subject, what,
                     mbed_text(ret, text, sizeof(text)));
        else
            snprintf(err, WSG_ERRLEN, "certificate for %s: %s out of range (%u days)", c->subject, what,
                     c->days);
    }
    free(san);
    free(ip);
    mbedtls_x509write_crt_free(&crt);
    return rc;
}

static int new_key(mbedtls_ctr_drbg_context *drbg, mbedtls_pk_context *key, unsigned char *pem, size_t cap,
                   char err[WSG_ERRLEN])
{
    char text[160];
    int ret = mbedtls_pk_setup(key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
    if (ret == 0)
        ret =
            mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(*key), mbedtls_ctr_drbg_random, drbg);
    if (ret == 0)
        ret = mbedtls_pk_write_key_pem(key, pem, cap);
    if (ret != 0) {
        snprintf(err, WSG_ERRLEN, "generating an ECDSA P-256 key: %s", mbed_text(ret, text, sizeof(text)));
        return -1;
    }
    return 0;
}

static int path_exists(const char *path)
{
    struct stat sb;
    return lstat(path, &sb) == 0;
}

/* Everything a CA-signed run holds, freed in one place. */
struct gen_state {
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_pk_context leaf_key, ca_key;
    mbedtls_x509_crt ca_crt;
    unsigned char *cert_pem, *key_pem, *ca_pem, *ca_key_pem;
    char ca_name[512];
    char *ca_pem_path, *ca_key_path; /* --ca-out: DIR/ca.pem, DIR/ca.key */
};

/* Makes DIR/ca.pem + DIR/ca.key, and leaves the CA loaded in g for signing. */
static int make_ca(struct gen_state *g, const char *dir, unsigned days, FILE *out, char err[WSG_ERRLEN])
{
    char text[160];
    if (asprintf(&g->ca_pem_path, "%s/ca.pem", dir) < 0 || asprintf(&g->ca_key_path, "%s/ca.key", dir) < 0) {
        snprintf(err, WSG_ERRLEN, "out of memory");
        return -1;
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        snprintf(err, WSG_ERRLEN, "%s: cannot create the directory: %s", dir, strerror(errno));
        return -1;
    }
    if (path_exists(g->ca_pem_path) || path_exists(g->ca_key_path)) {
        snprintf(err, WSG_ERRLEN,
                 "%s: a CA already exists there; sign with it using --ca %s %s, or choose another directory",
                 dir, g->ca_pem_path, g->ca_key_path);
        return -1;
    }
    unsigned char tag[4];
    int ret = mbedtls_ctr_drbg_random(&g->drbg, tag, sizeof(tag));
    if (ret != 0) {
        snprintf(err, WSG_ERRLEN, "CA name: %s", mbed_text(ret, text, sizeof(text)));
        return -1;
    }
    /* A distinct name per CA, so that two development CAs in one trust store never collide. */
    snprintf(g->ca_name, sizeof(g->ca_name), "CN=wsgate development CA %02x%02x%02x%02x,O=wsgate", tag[0],
             tag[1], tag[2], tag[3]);
    if (new_key(&g->drbg, &g->ca_key, g->ca_key_pem, KEY_CAP, err) != 0)
        return -1;
    struct cert_spec spec = {.key = &g->ca_key, .subject = g->ca_name, .days = days, .is_ca = 1};
    struct signer self = {.key = &g->ca_key, .name = g->ca_name};
    if (write_cert(&g->drbg, &spec, &self, g->ca_pem, CERT_CAP, err) != 0)
        return -1;
    ret = mbedtls_x509_crt_parse(&g->ca_crt, g->ca_pem, strlen((char *)g->ca_pem) + 1);
    if (ret != 0) {
        snprintf(err, WSG_ERRLEN, "the new CA does not parse: %s", mbed_text(ret, text, sizeof(text)));
        return -1;
    }
    if (wsg_certs_write_atomic(g->ca_key_path, g->ca_key_pem, strlen((char *)g->ca_key_pem), 0600, err) !=
            0 ||
        wsg_certs_write_atomic(g->ca_pem_path, g->ca_pem, strlen((char *)g->ca_pem), 0644, err) != 0)
        return -1;
    if (out != NULL)
        fprintf(out, "wrote %s (development CA, valid %u days: the file clients trust) and %s\n",
                g->ca_pem_path, days, g->ca_key_path);
    return 0;
}

/* Loads an existing CA (the first certificate of cert_path) and checks its key. */
static int load_ca(struct gen_state *g, const char *cert_path, const char *key_path, char err[WSG_ERRLEN])
{
    char text[160];
    int ret = mbedtls_x509_crt_parse_file(&g->ca_crt, cert_path);
    if (ret < 0 || g->ca_crt.raw.p == NULL) {
        snprintf(err, WSG_ERRLEN, "%s: cannot parse the CA certificate: %s", cert_path,
                 ret < 0 ? mbed_text(ret, text, sizeof(text)) : "no certificate in it");
        return -1;
    }
    ret = mbedtls_pk_parse_keyfile(&g->ca_key, key_path, NULL, mbedtls_ctr_drbg_random, &g->drbg);
    if (ret != 0) {
        snprintf(err, WSG_ERRLEN, "%s: cannot parse the CA private key: %s", key_path,
                 mbed_text(ret, text, sizeof(text)));
        return -1;
    }
    if (mbedtls_pk_check_pair(&g->ca_crt.pk, &g->ca_key, mbedtls_ctr_drbg_random, &g->drbg) != 0) {
        snprintf(err, WSG_ERRLEN, "%s: private key does not match %s", key_path, cert_path);
        return -1;
    }
    if (mbedtls_x509_dn_gets(g->ca_name, sizeof(g->ca_name), &g->ca_crt.subject) < 0) {
        snprintf(err, WSG_ERRLEN, "%s: the CA's subject name is too long", cert_path);
        return -1;
    }
    return 0;
}

/* The new leaf must chain to the CA that signed it (catches a CA that is not a CA, or expired). */
static int verify_leaf(const unsigned char *pem, mbedtls_x509_crt *ca, const char *ca_path,
                       char err[WSG_ERRLEN])
{
    char text[200];
    mbedtls_x509_crt leaf;
    mbedtls_x509_crt_init(&leaf);
    uint32_t flags = 0;
    int ret = mbedtls_x509_crt_parse(&leaf, pem, strlen((const char *)pem) + 1);
    if (ret == 0)
        ret = mbedtls_x509_crt_verify(&leaf, ca, NULL, NULL, &flags, NULL, NULL);
    mbedtls_x509_crt_free(&leaf);
    if (ret == 0)
        return 0;
    if (flags != 0 && mbedtls_x509_crt_verify_info(text, sizeof(text), "", flags) > 0) {
        for (char *nl = strchr(text, '\n'); nl != NULL; nl = strchr(nl, '\n'))
            *nl = nl[1] != '\0' ? ';' : '\0';
    } else {
        mbed_text(ret, text, sizeof(text));
    }
    snprintf(err, WSG_ERRLEN, "%s: cannot sign server certificates: %s", ca_path, text);
    return -1;
}

int wsg_certs_gen(const struct wsg_certs_gen_opts *o, FILE *out, char err[WSG_ERRLEN])
{
    static const unsigned char pers[] = "wsgate-certs gen";
    char text[160], subject[300];
    int rc = -1, ret;
    unsigned days = o->days != 0 ? o->days : WSG_CERTS_DEFAULT_DAYS;
    if (o->nnames == 0 || o->nnames > WSG_CERTS_MAX_NAMES) {
        snprintf(err, WSG_ERRLEN, "give between 1 and %d names", WSG_CERTS_MAX_NAMES);
        return -1;
    }
    for (size_t i = 0; i < o->nnames; i++) {
        const char *why;
        if (!wsg_certs_name_ok(o->names[i], &why)) {
            snprintf(err, WSG_ERRLEN, "name \"%.100s\" %s", o->names[i], why);
            return -1;
        }
    }
    if (wsg_tls_cn_subject(o->names[0], subject, sizeof(subject)) != 0) {
        snprintf(err, WSG_ERRLEN, "name too long: %.40s...", o->names[0]);
        return -1;
    }
    psa_status_t ps = psa_crypto_init();
    if (ps != PSA_SUCCESS) {
        snprintf(err, WSG_ERRLEN, "PSA crypto initialisation failed (%d)", (int)ps);
        return -1;
    }
    struct gen_state *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        snprintf(err, WSG_ERRLEN, "out of memory");
        return -1;
    }
    mbedtls_entropy_init(&g->entropy);
    mbedtls_ctr_drbg_init(&g->drbg);
    mbedtls_pk_init(&g->leaf_key);
    mbedtls_pk_init(&g->ca_key);
    mbedtls_x509_crt_init(&g->ca_crt);
    g->cert_pem = calloc(1, CERT_CAP);
    g->key_pem = calloc(1, KEY_CAP);
    g->ca_pem = calloc(1, CERT_CAP);
    g->ca_key_pem = calloc(1, KEY_CAP);
    if (g->cert_pem == NULL || g->key_pem == NULL || g->ca_pem == NULL || g->ca_key_pem == NULL) {
        snprintf(err, WSG_ERRLEN, "out of memory");
        goto out;
    }
    ret = mbedtls_ctr_drbg_seed(&g->drbg, mbedtls_entropy_func, &g->entropy, pers, sizeof(pers) - 1);
    if (ret != 0) {
        snprintf(err, WSG_ERRLEN, "cannot seed the random generator: %s", mbed_text(ret, text, sizeof(text)));
        goto out;
    }

    const char *signed_by = "self-signed";
    if (o->ca_out_dir == NULL && o->ca_cert == NULL) {
        /* The gateway's own generator: one code path for every self-signed certificate. */
        if (wsg_tls_gen_selfsigned(o->names, o->nnames, days, (char *)g->cert_pem, CERT_CAP,
                                   (char *)g->key_pem, KEY_CAP, err) != 0)
            goto out;
    } else {
        const char *ca_path = o->ca_cert;
        if (o->ca_out_dir != NULL) {
            if (make_ca(g, o->ca_out_dir, days > WSG_CERTS_CA_DAYS ? days : WSG_CERTS_CA_DAYS, out, err) != 0)
                goto out;
            ca_path = g->ca_pem_path;
        } else if (load_ca(g, o->ca_cert, o->ca_key, err) != 0) {
            goto out;
        }
        signed_by = ca_path;
        if (new_key(&g->drbg, &g->leaf_key, g->key_pem, KEY_CAP, err) != 0)
            goto out;
        struct cert_spec spec = {
            .key = &g->leaf_key, .subject = subject, .days = days, .names = o->names, .nnames = o->nnames};
        struct signer ca = {.key = &g->ca_key, .name = g->ca_name};
        if (g->ca_crt.subject_key_id.p != NULL && g->ca_crt.subject_key_id.len != 0) {
            ca.key_id = g->ca_crt.subject_key_id.p;
            ca.key_id_len = g->ca_crt.subject_key_id.len;
        }
        if (write_cert(&g->drbg, &spec, &ca, g->cert_pem, CERT_CAP, err) != 0 ||
            verify_leaf(g->cert_pem, &g->ca_crt, ca_path, err) != 0)
            goto out;
    }
    /* Key first: a reader that sees the new certificate also finds its key. */
    if (wsg_certs_write_atomic(o->out_key, g->key_pem, strlen((char *)g->key_pem), 0600, err) != 0 ||
        wsg_certs_write_atomic(o->out_cert, g->cert_pem, strlen((char *)g->cert_pem), 0644, err) != 0)
        goto out;
    if (out != NULL) {
        fprintf(out, "wrote %s (%s, valid %u days, names:", o->out_cert, signed_by, days);
        for (size_t i = 0; i < o->nnames; i++)
            fprintf(out, " %s", o->names[i]);
        fprintf(out, ") and %s (mode 0600)\n", o->out_key);
    }
    rc = 0;
out:
    if (g->key_pem != NULL)
        mbedtls_platform_zeroize(g->key_pem, KEY_CAP);
    if (g->ca_key_pem != NULL)
        mbedtls_platform_zeroize(g->ca_key_pem, KEY_CAP);
    free(g->cert_pem);
    free(g->key_pem);
    free(g->ca_pem);
    free(g->ca_key_pem);
    free(g->ca_pem_path);
    free(g->ca_key_path);
    mbedtls_x509_crt_free(&g->ca_crt);
    mbedtls_pk_free(&g->ca_key);
    mbedtls_pk_free(&g->leaf_key);
    mbedtls_ctr_drbg_free(&g->drbg);
    mbedtls_entropy_free(&g->entropy);
    free(g);
    return rc;
}

int wsg_certs_gen_main(int argc, char **argv, FILE *out, FILE *err)
{
    const char *names[WSG_CERTS_MAX_NAMES];
    const char *pos[2];
    size_t npos = 0;
    struct wsg_certs_gen_opts o = {.names = names};
    int only_positional = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (only_positional || a[0] != '-' || a[1] == '\0') {
            if (npos == 2)
                return wsg_certs_usage_error(err, "gen", GEN_SYNOPSIS, "unexpected argument \"%s\"", a);
            pos[npos++] = a;
        } else if (strcmp(a, "--") == 0) {
            only_positional = 1;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(gen_usage, out);
            return WSG_CERTS_OK;
        } else if (wsg_certs_opt_is(a, "--name")) {
            if ((v = wsg_certs_opt_value(argc, argv, &i)) == NULL)
                return wsg_certs_usage_error(err, "gen", GEN_SYNOPSIS, "--name needs a value");
            if (o.nnames == WSG_CERTS_MAX_NAMES)
                return wsg_certs_usage_error(err, "gen", GEN_SYNOPSIS, "at most %d names",
                                             WSG_CERTS_MAX_NAMES);
            names[o.nnames++] = v;
        } else if (wsg_certs_opt_is(a, "--days")) {
            if ((v = wsg_certs_opt_value(argc, argv, &i)) == NULL ||
                wsg_certs_parse_uint(v, 1, 36500, &o.days) != 0)
                return wsg_certs_usage_error(err, "gen", GEN_SYNOPSIS,
                                             "--days needs a number of days from 1 to 36500");
        } else if (wsg_certs_opt_is(a, "--ca-out")) {
            if ((v = wsg_certs_opt_value(argc, argv, &i)) == NULL || *v == '\0')
                return wsg_certs_usage_error(err, "gen", GEN_SYNOPSIS, "--ca-out needs a directory");
            o.ca_out_dir = v;
        } else if (strcmp(a, "--ca") == 0) {
            if (i + 2 >= argc)
                return wsg_certs_usage_error(err, "gen", GEN_SYNOPSIS, "--ca needs CERT and KEY");
            o.ca_cert = argv[++i];
            o.ca_key = argv[++i];
        } else {
            return wsg_certs_usage_error(err, "gen", GEN_SYNOPSIS, "unknown option \"%s\"", a);
        }
    }
    if (o.nnames == 0)
        return wsg_certs_usage_error(err, "gen", GEN_SYNOPSIS, "give at least one --name");
    if (o.ca_out_dir != NULL && o.ca_cert != NULL)
        return wsg_certs_usage_error(err, "gen", GEN_SYNOPSIS, "--ca-out and --ca exclude each other");
    if (npos != 2)
        return wsg_certs_usage_error(err, "gen", GEN_SYNOPSIS, "give OUT_CERT and OUT_KEY");
    if (strcmp(pos[0], pos[1]) == 0)
        return wsg_certs_usage_error(err, "gen", GEN_SYNOPSIS, "OUT_CERT and OUT_KEY are the same file");
    for (size_t i = 0; i < o.nnames; i++) {
        const char *why;
        if (!wsg_certs_name_ok(names[i], &why))
            return wsg_certs_usage_error(err, "gen", GEN_SYNOPSIS, "--name \"%s\" %s", names[i], why);
    }
    o.out_cert = pos[0];
    o.out_key = pos[1];
    char msg[WSG_ERRLEN];
    if (wsg_certs_gen(&o, out, msg) != 0) {
        fprintf(err, "wsgate-certs gen: %s\n", msg);
        return WSG_CERTS_BAD;
    }
    return WSG_CERTS_OK;
}
