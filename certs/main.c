/*
 * main.c - wsgate-certs: dispatches to one subcommand. Each row of the table below is a command:
 * the function gets argv starting at the command's name and returns the process exit code.
 */
#include <stdio.h>
#include <string.h>

#include "certs/acme.h"
#include "certs/certs.h"

struct command {
    const char *name;
    int (*run)(int argc, char **argv, FILE *out, FILE *err);
    const char *summary;
};

static const struct command commands[] = {
    {"gen", wsg_certs_gen_main, "generate a key and certificate (self-signed or CA-signed)"},
    {"check", wsg_certs_check_main, "check a pair: key match, chain, names, validity"},
    {"rotate", wsg_certs_rotate_main,
     "install a new pair into a running gateway, verify, roll back on failure"},
    {"status", wsg_certs_status_main,
     "what a running gateway serves: names, fingerprints, expiry, generations"},
    {"acme", wsg_certs_acme_main,
     "obtain a certificate from an ACME server (RFC 8555) and install it as rotate does"},
    {"tickets", wsg_certs_tickets_main, "tickets new FILE: rotate a shared session ticket key file"},
};

static void usage(FILE *out)
{
    fputs("usage: wsgate-certs COMMAND [ARGS]...\n"
          "       wsgate-certs COMMAND --help\n"
          "commands:\n",
          out);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fputs("exit codes: 0 good, 1 bad (rotate: refused or rolled back), 2 good but expiring (check, rotate,\n"
          "            status), 64 bad usage\n",
          out);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return WSG_CERTS_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0) {
        usage(stdout);
        return WSG_CERTS_OK;
    }
    if (strcmp(cmd, "help") == 0) {
        if (argc == 2) {
            usage(stdout);
            return WSG_CERTS_OK;
        }
        char help[] = "--help";
        char *args[] = {argv[2], help, NULL};
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
            if (strcmp(argv[2], commands[i].name) == 0)
                return commands[i].run(2, args, stdout, stderr);
        fprintf(stderr, "wsgate-certs: unknown command \"%s\"\n", argv[2]);
        usage(stderr);
        return WSG_CERTS_USAGE;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(cmd, commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1, stdout, stderr);
    fprintf(stderr, "wsgate-certs: unknown command \"%s\"\n", cmd);
    usage(stderr);
    return WSG_CERTS_USAGE;
}
