/*
 * mangen.c - writes the parts of the manual and of the example configuration that come from the
 * settings table (gateway/config.c, read through wsg_cfg_row), so they cannot drift from the code.
 *
 *   mangen man       the SETTINGS section of wsgate.conf(5), roff: one .TP entry per setting
 *   mangen example   every setting as a commented line of a configuration file, with its help
 *
 * The Makefile splices the output into docs/man/wsgate.conf.5.in and examples/wsgate.conf.in.
 */
#include <stdio.h>
#include <string.h>

#include "gateway/config.h"

/* Text for a roff body line: backslashes escaped, a leading dot or quote neutralised, and the
 * hyphens of --options and of minus signs kept as \- so they copy and paste. */
static void roff(FILE *out, const char *s)
{
    if (*s == '.' || *s == '\'')
        fputs("\\&", out);
    for (; *s; s++) {
        if (*s == '\\')
            fputs("\\e", out);
        else if (*s == '-')
            fputs("\\-", out);
        else
            fputc(*s, out);
    }
}

static void man(FILE *out)
{
    struct wsg_cfg_row r;
    for (size_t i = 0; wsg_cfg_row(i, &r) == 0; i++) {
        fputs(".TP\n.BI ", out);
        roff(out, r.name);
        fputs(" \" ", out);
        roff(out, r.metavar);
        fputs("\"\n", out);
        roff(out, r.help);
        if (r.bounds[0]) {
            fputc(' ', out);
            roff(out, r.bounds + 1);
        }
        fputs(".\n", out);
        if (r.def != NULL && r.def[0]) {
            fputs("Default: \\fB", out);
            roff(out, r.def);
            fputs("\\fR.\n", out);
        }
        fprintf(out, "Type: %s%s.\n", r.type, r.route ? "; also inside \\fBroute\\fR blocks" : "");
    }
}

/* "# " + the words of s wrapped at 100 columns. */
static void comment(FILE *out, const char *s)
{
    size_t col = 0;
    while (*s) {
        size_t w = strcspn(s, " ");
        if (col > 0 && col + 1 + w > 100) {
            fputc('\n', out);
            col = 0;
        }
        if (col == 0) {
            fputs("#", out);
            col = 1;
        }
        fputc(' ', out);
        fwrite(s, 1, w, out);
        col += 1 + w;
        s += w;
        while (*s == ' ')
            s++;
    }
    fputc('\n', out);
}

static void example(FILE *out)
{
    struct wsg_cfg_row r;
    for (size_t i = 0; wsg_cfg_row(i, &r) == 0; i++) {
        char line[1024];
        snprintf(line, sizeof(line), "%s %s: %s%s%s", r.name, r.metavar, r.help, r.bounds,
                 r.route ? " [also in route blocks]" : "");
        fputc('\n', out);
        comment(out, line);
        if (r.def != NULL)
            fprintf(out, "#%s %s\n", r.name, r.def[0] ? r.def : "\"\"");
        else
            fprintf(out, "#%s %s\n", r.name, r.metavar);
    }
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "man") == 0)
        man(stdout);
    else if (argc == 2 && strcmp(argv[1], "example") == 0)
        example(stdout);
    else {
        fprintf(stderr, "usage: mangen man|example\n");
        return 64;
    }
    return ferror(stdout) || fflush(stdout) != 0 ? 1 : 0;
}
