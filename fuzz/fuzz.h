/*
 * fuzz.h - shared by the libFuzzer targets and by replay.c: the entry point prototypes, an
 * invariant check that aborts with a message (so both libFuzzer and the gcc replay report it and
 * keep the input), and a little cursor for the leading control bytes of an input.
 *
 * Each target is a thin wrapper over public entry points of the library; nothing here knows the
 * library's internals.
 */
#ifndef WSG_FUZZ_H
#define WSG_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* An invariant of the code under test does not hold: print where and why, then abort (libFuzzer
 * turns the abort into a crash report and writes the reproducer). */
#define FUZZ_CHECK(cond)                                                                                     \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);                     \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

/* FUZZ_VERBOSE=1 in the environment: targets print what they saw (for reading a corpus by hand). */
static inline int fuzz_verbose(void)
{
    static int v = -1;
    if (v < 0)
        v = getenv("FUZZ_VERBOSE") != NULL;
    return v;
}

/* Takes control bytes from the front of the input; 0 once it is exhausted. */
struct fuzz_in {
    const uint8_t *p;
    size_t n;
};

static inline uint8_t fuzz_byte(struct fuzz_in *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

#endif
