/* Helpers shared by the C programs that tests/preload.rs compiles and runs,
 * with and without LD_PRELOAD=libshmsem_preload.so. */
#ifndef SHMSEM_TEST_COMMON_H
#define SHMSEM_TEST_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* glibc leaves the definition of union semun to the program. */
union semun {
    int val;
    struct semid_ds *buf;
    unsigned short *array;
    struct seminfo *__buf;
};

/* Failing check: report the line and errno, exit with status 99. */
#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: check failed: %s (errno %d: %s)\n",      \
                    __FILE__, __LINE__, #cond, errno, strerror(errno));      \
            fflush(stdout);                                                  \
            _exit(99);                                                       \
        }                                                                    \
    } while (0)

/* The symbolic name of an errno value, for output compared with the kernel. */
static inline const char *errname(int e)
{
    switch (e) {
    case 0: return "0";
    case E2BIG: return "E2BIG";
    case EACCES: return "EACCES";
    case EAGAIN: return "EAGAIN";
    case EEXIST: return "EEXIST";
    case EFAULT: return "EFAULT";
    case EFBIG: return "EFBIG";
    case EIDRM: return "EIDRM";
    case EINTR: return "EINTR";
    case EINVAL: return "EINVAL";
    case ENOENT: return "ENOENT";
    case ENOMEM: return "ENOMEM";
    case ENOSPC: return "ENOSPC";
    case EPERM: return "EPERM";
    case ERANGE: return "ERANGE";
    case ENOSYS: return "ENOSYS";
    default: return "E?";
    }
}

/* One line "label: ok" or "label: ENAME" for a call's result `r` (-1 is a
 * failure, with errno). */
static inline void report(const char *label, long r)
{
    if (r == -1)
        printf("%s: %s\n", label, errname(errno));
    else
        printf("%s: ok\n", label);
}

/* Runs `expr` with errno cleared and reports its result (see report). */
#define TRY(label, expr)                                                     \
    do {                                                                     \
        errno = 0;                                                           \
        long r_ = (long)(expr);                                              \
        report(label, r_);                                                   \
    } while (0)

/* The key to use: argv[1] as a number, or IPC_PRIVATE for "private". */
static inline key_t key_arg(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "private") == 0)
        return IPC_PRIVATE;
    return (key_t)strtol(argv[1], NULL, 0);
}

/* Tells the test we are ready (one line on stdout), then waits until it
 * writes a line (or closes) our stdin. */
static inline void handshake(const char *what, int id)
{
    char line[64];
    printf("ready %s %d\n", what, id);
    fflush(stdout);
    if (fgets(line, sizeof line, stdin) == NULL) {
        /* EOF is a go as well. */
    }
}

static inline double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

#endif
