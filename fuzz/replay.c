/*
 * replay.c - runs a libFuzzer target's LLVMFuzzerTestOneInput over files, without libFuzzer
 * (mbedTLS programs/fuzz/onefile.c, extended to directories). Linked with one target and built
 * by gcc under ASan + UBSan, it makes every committed corpus a regression test where clang is
 * absent (`make fuzz-replay`, part of `make test`).
 *
 * Usage: replay-TARGET [-1] PATH...   (PATH: a file, or a directory walked recursively;
 *                                      dotfiles are skipped)
 * Each input runs in a forked child, so one crash is reported with its file name and the others
 * still run; -1 runs them in this process instead (for a debugger).
 * Prints "replay TARGET: N passed, M failed" and exits 1 if any failed.
 * LLVMFuzzerInitialize, when the target has one, runs once before the first input.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fuzz/fuzz.h"

/* Targets without an initialiser leave this weak reference unresolved (NULL). */
extern int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static unsigned passed, failed;
static int in_process;

/* Reads a whole file into an exact-size allocation (ASan sees reads past the input's end). */
static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    while (buf != NULL) {
        if (n == cap) {
            uint8_t *b = realloc(buf, cap *= 2);
            if (b == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = b;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    int bad = buf == NULL || ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return NULL;
    }
    uint8_t *exact = malloc(n ? n : 1);
    if (exact != NULL && n)
        memcpy(exact, buf, n);
    free(buf);
    *len = n;
    return exact;
}

static void run_one(const char *path)
{
    size_t len = 0;
    uint8_t *data = slurp(path, &len);
    if (data == NULL) {
        fprintf(stderr, "replay: %s: cannot read: %s\n", path, strerror(errno));
        failed++;
        return;
    }
    if (in_process) {
        LLVMFuzzerTestOneInput(data, len);
        free(data);
        passed++;
        return;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("replay: fork");
        exit(2);
    }
    if (pid == 0) {
        LLVMFuzzerTestOneInput(data, len);
        exit(0); /* not _exit: LeakSanitizer checks at exit */
    }
    free(data);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
        passed++;
        return;
    }
    failed++;
    if (WIFSIGNALED(st))
        fprintf(stderr, "replay: FAILED %s (signal %d)\n", path, WTERMSIG(st));
    else
        fprintf(stderr, "replay: FAILED %s (exit %d)\n", path, WEXITSTATUS(st));
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static void run_path(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        failed++;
        return;
    }
    if (!S_ISDIR(sb.st_mode)) {
        run_one(path);
        return;
    }
    struct dirent **ents;
    int n = scandir(path, &ents, NULL, by_name);
    if (n < 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        failed++;
        return;
    }
    for (int i = 0; i < n; i++) {
        if (ents[i]->d_name[0] != '.') {
            size_t l = strlen(path) + strlen(ents[i]->d_name) + 2;
            char *sub = malloc(l);
            if (sub != NULL) {
                snprintf(sub, l, "%s/%s", path, ents[i]->d_name);
                run_path(sub);
                free(sub);
            }
        }
        free(ents[i]);
    }
    free(ents);
}

int main(int argc, char **argv)
{
    const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    if (strncmp(name, "replay-", 7) == 0)
        name += 7;
    int first = 1;
    if (argc > 1 && strcmp(argv[1], "-1") == 0) {
        in_process = 1;
        first = 2;
    }
    if (argc <= first) {
        fprintf(stderr, "usage: %s [-1] FILE|DIR...\n", argv[0]);
        return 2;
    }
    if (LLVMFuzzerInitialize != NULL)
        LLVMFuzzerInitialize(&argc, &argv);
    for (int i = first; i < argc; i++)
        run_path(argv[i]);
    printf("replay %s: %u passed, %u failed\n", name, passed, failed);
    return failed ? 1 : 0;
}
