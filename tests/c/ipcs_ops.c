/* The small C program of tests/ipcs.rs: it makes sets with fixed keys,
 * operates on them, waits for waiters to show, and reads the two /proc
 * files through every open call, for the same script run on the kernel
 * (in a private IPC namespace) and on shmsem (LD_PRELOAD).
 *
 *   mk KEY NSEMS MODE          semget(IPC_CREAT|IPC_EXCL); prints the id
 *   setall LABEL ID V...       SETALL; prints "@pid LABEL PID"
 *   op LABEL ID N:OP[:FLAGS].. one semop (FLAGS: u SEM_UNDO, n IPC_NOWAIT);
 *                              prints "@pid LABEL PID"
 *   wait ID N:OP[:FLAGS]...    one semop that may block (run in the
 *                              background; prints nothing; exit 0, or 3
 *                              with the errno's name on stderr)
 *   count ID NUM ncnt|zcnt N   waits (20 s at most) until GETNCNT or
 *                              GETZCNT of semaphore NUM is N
 *   files DIR                  reads /proc/sysvipc/sem and
 *                              /proc/sys/kernel/sem every way (DIR: a
 *                              scratch directory for a symbolic link) and
 *                              prints what a caller can observe
 *   writes                     opens both files for writing every way and
 *                              prints the errno (writes nothing)
 */
#include "common.h"

#include <fcntl.h>
#include <sys/stat.h>

/* glibc's fortified entry points, called directly. */
extern int __open_2(const char *path, int flags);
extern int __open64_2(const char *path, int flags);
extern int __openat_2(int dirfd, const char *path, int flags);
extern int __openat64_2(int dirfd, const char *path, int flags);

static const char *ename(int e)
{
    switch (e) {
    case EBADF: return "EBADF";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case EROFS: return "EROFS";
    case EIO: return "EIO";
    default: return errname(e);
    }
}

static long num(const char *s)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 0);
    CHECK(errno == 0 && *end == '\0' && end != s);
    return v;
}

/* "N:OP[:FLAGS]" into one sembuf. */
static struct sembuf parse_op(const char *s)
{
    struct sembuf b = { 0, 0, 0 };
    char buf[64];
    CHECK(strlen(s) < sizeof buf);
    strcpy(buf, s);
    char *op = strchr(buf, ':');
    CHECK(op != NULL);
    *op++ = '\0';
    char *flags = strchr(op, ':');
    if (flags)
        *flags++ = '\0';
    b.sem_num = (unsigned short)num(buf);
    b.sem_op = (short)num(op);
    for (; flags && *flags; flags++) {
        if (*flags == 'u')
            b.sem_flg |= SEM_UNDO;
        else if (*flags == 'n')
            b.sem_flg |= IPC_NOWAIT;
        else
            CHECK(!"unknown flag");
    }
    return b;
}

static int do_semop(int id, int n, char **specs)
{
    struct sembuf ops[16];
    CHECK(n >= 1 && n <= 16);
    for (int i = 0; i < n; i++)
        ops[i] = parse_op(specs[i]);
    return semop(id, ops, n);
}

/* ------------------------------------------------------------------ */
/* Reading the files                                                   */
/* ------------------------------------------------------------------ */

struct text {
    char buf[65536];
    size_t len;
};

/* Reads fd to its end into t (closing it); -1 with errno on a failure. */
static int read_fd(int fd, struct text *t)
{
    t->len = 0;
    if (fd < 0)
        return -1;
    for (;;) {
        ssize_t n = read(fd, t->buf + t->len, sizeof t->buf - t->len);
        if (n < 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        if (n == 0)
            break;
        t->len += (size_t)n;
        CHECK(t->len < sizeof t->buf);
    }
    close(fd);
    return 0;
}

static int read_stream(FILE *f, struct text *t)
{
    t->len = 0;
    if (!f)
        return -1;
    t->len = fread(t->buf, 1, sizeof t->buf, f);
    CHECK(t->len < sizeof t->buf);
    fclose(f);
    return 0;
}

static const struct text *reference;

/* One way of opening: "  WAY: same" if it read what open() read, else
 * what differs (or the errno). */
static void compare(const char *way, int r, const struct text *t)
{
    if (r < 0)
        printf("  %s: %s\n", way, ename(errno));
    else if (t->len == reference->len && memcmp(t->buf, reference->buf, t->len) == 0)
        printf("  %s: same\n", way);
    else
        printf("  %s: DIFFERENT (%zu bytes, open read %zu)\n", way, t->len, reference->len);
}

/* The result of opening `path` with `flags`: "ok" or the errno. */
static void try_open(const char *label, const char *path, int flags)
{
    errno = 0;
    int fd = open(path, flags, 0644);
    printf("  %s: %s\n", label, fd >= 0 ? "ok" : ename(errno));
    if (fd >= 0)
        close(fd);
}

static void one_file(const char *path, const char *dir, const char *spelt, const char *relative,
                     const char *linkdir)
{
    static struct text ref, t;
    printf("%s\n", path);
    CHECK(read_fd(open(path, O_RDONLY), &ref) == 0);
    reference = &ref;
    printf("  ends with a newline: %s\n", ref.len > 0 && ref.buf[ref.len - 1] == '\n' ? "yes" : "no");

    compare("open64", read_fd(open64(path, O_RDONLY), &t), &t);
    compare("openat", read_fd(openat(AT_FDCWD, path, O_RDONLY), &t), &t);
    compare("openat64", read_fd(openat64(AT_FDCWD, path, O_RDONLY), &t), &t);
    int d = open(dir, O_RDONLY | O_DIRECTORY);
    CHECK(d >= 0);
    compare("openat(dir, \"sem\")", read_fd(openat(d, "sem", O_RDONLY), &t), &t);
    compare("__open_2", read_fd(__open_2(path, O_RDONLY), &t), &t);
    compare("__open64_2", read_fd(__open64_2(path, O_RDONLY), &t), &t);
    compare("__openat_2", read_fd(__openat_2(d, "sem", O_RDONLY), &t), &t);
    compare("__openat64_2", read_fd(__openat64_2(AT_FDCWD, path, O_RDONLY), &t), &t);
    close(d);
    compare("fopen r", read_stream(fopen(path, "r"), &t), &t);
    compare("fopen64 re", read_stream(fopen64(path, "re"), &t), &t);
    compare(spelt, read_fd(open(spelt, O_RDONLY), &t), &t);
    CHECK(chdir("/proc") == 0);
    compare(relative, read_fd(open(relative, O_RDONLY), &t), &t);
    CHECK(chdir("/") == 0);
    char link[4096];
    snprintf(link, sizeof link, "%s/link", linkdir);
    unlink(link);
    CHECK(symlink(path, link) == 0);
    compare("a symbolic link", read_fd(open(link, O_RDONLY), &t), &t);
    unlink(link);

    /* What one descriptor looks like; errno is left alone on success. */
    errno = EDOM;
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    printf("  errno after a successful open: %s\n", errno == EDOM ? "untouched" : ename(errno));
    errno = EDOM;
    FILE *g = fopen(path, "r");
    CHECK(g != NULL);
    printf("  errno after a successful fopen: %s\n", errno == EDOM ? "untouched" : ename(errno));
    fclose(g);
    struct stat st;
    CHECK(fstat(fd, &st) == 0);
    printf("  fstat: %s, mode %04o\n", S_ISREG(st.st_mode) ? "regular" : "not regular",
           (unsigned)(st.st_mode & 07777));
    int fl = fcntl(fd, F_GETFL);
    printf("  access mode: %s\n",
           (fl & O_ACCMODE) == O_RDONLY ? "read-only" : "not read-only");
    printf("  close-on-exec without O_CLOEXEC: %d\n", (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
    errno = 0;
    printf("  write: %s\n", write(fd, "1", 1) < 0 ? ename(errno) : "written");
    char five[5];
    printf("  read 5: %zd\n", read(fd, five, 5));
    printf("  seek to 0: %ld\n", (long)lseek(fd, 0, SEEK_SET));
    CHECK(read_fd(fd, &t) == 0);
    compare("read again after the seek", 0, &t);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0);
    printf("  close-on-exec with O_CLOEXEC: %d\n", (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
    close(fd);
    FILE *f = fopen(path, "re");
    CHECK(f != NULL);
    printf("  close-on-exec with fopen \"re\": %d\n", (fcntl(fileno(f), F_GETFD) & FD_CLOEXEC) != 0);
    fclose(f);
    /* The lowest free number, as the kernel gives it. */
    int lowest = dup(0);
    CHECK(lowest >= 0);
    close(lowest);
    fd = open(path, O_RDONLY);
    printf("  number: %s\n", fd == lowest ? "the lowest free" : "another");
    close(fd);

    /* The kernel's checks. */
    try_open("O_DIRECTORY", path, O_RDONLY | O_DIRECTORY);
    try_open("O_CREAT|O_EXCL", path, O_RDONLY | O_CREAT | O_EXCL);
    char slash[4096];
    snprintf(slash, sizeof slash, "%s/", path);
    try_open("a trailing slash", slash, O_RDONLY);
    errno = 0;
    fd = open(path, O_PATH);
    printf("  O_PATH: %s\n", fd >= 0 ? "ok" : ename(errno));
    if (fd >= 0)
        close(fd);
    errno = 0;
    f = fopen(path, "q");
    printf("  fopen \"q\": %s\n", f ? "ok" : ename(errno));
    if (f)
        fclose(f);
}

static void writes(const char *path)
{
    printf("%s\n", path);
    try_open("O_WRONLY", path, O_WRONLY);
    try_open("O_RDWR", path, O_RDWR);
    try_open("O_WRONLY|O_TRUNC", path, O_WRONLY | O_TRUNC);
    try_open("O_RDONLY|O_TRUNC", path, O_RDONLY | O_TRUNC);
    errno = 0;
    int fd = creat(path, 0644);
    printf("  creat: %s\n", fd >= 0 ? "ok" : ename(errno));
    if (fd >= 0)
        close(fd);
    const char *modes[] = { "w", "r+", "a", "we" };
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        errno = 0;
        /* Closed without a write: an unbuffered stream flushes nothing. */
        FILE *f = fopen(path, modes[i]);
        printf("  fopen \"%s\": %s\n", modes[i], f ? "ok" : ename(errno));
        if (f)
            fclose(f);
    }
    /* Still the namespace's text afterwards. */
    struct text t;
    CHECK(read_fd(open(path, O_RDONLY), &t) == 0);
    printf("  readable afterwards: %zu bytes\n", t.len);
}

int main(int argc, char **argv)
{
    alarm(60);
    setvbuf(stdout, NULL, _IOLBF, 0);
    CHECK(argc >= 2);
    const char *cmd = argv[1];
    if (strcmp(cmd, "mk") == 0 && argc == 5) {
        int id = semget((key_t)num(argv[2]), (int)num(argv[3]), IPC_CREAT | IPC_EXCL | (int)num(argv[4]));
        CHECK(id >= 0);
        printf("%d\n", id);
    } else if (strcmp(cmd, "setall") == 0 && argc >= 5) {
        unsigned short vals[64];
        CHECK(argc - 4 <= 64);
        for (int i = 4; i < argc; i++)
            vals[i - 4] = (unsigned short)num(argv[i]);
        union semun arg = { .array = vals };
        CHECK(semctl((int)num(argv[3]), 0, SETALL, arg) == 0);
        printf("@pid %s %d\n", argv[2], (int)getpid());
    } else if (strcmp(cmd, "op") == 0 && argc >= 5) {
        CHECK(do_semop((int)num(argv[3]), argc - 4, argv + 4) == 0);
        printf("@pid %s %d\n", argv[2], (int)getpid());
    } else if (strcmp(cmd, "wait") == 0 && argc >= 4) {
        if (do_semop((int)num(argv[2]), argc - 3, argv + 3) != 0) {
            fprintf(stderr, "wait: %s\n", ename(errno));
            return 3;
        }
    } else if (strcmp(cmd, "count") == 0 && argc == 6) {
        int id = (int)num(argv[2]), n = (int)num(argv[3]), want = (int)num(argv[5]);
        int which = strcmp(argv[4], "ncnt") == 0 ? GETNCNT : GETZCNT;
        struct timespec start, now, pause = { 0, 1000000 };
        clock_gettime(CLOCK_MONOTONIC, &start);
        for (;;) {
            int got = semctl(id, n, which);
            CHECK(got >= 0);
            if (got == want)
                break;
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (now.tv_sec - start.tv_sec > 20) {
                fprintf(stderr, "count: %s of %d is %d, not %d after 20 s\n", argv[4], n, got, want);
                return 1;
            }
            nanosleep(&pause, NULL);
        }
    } else if (strcmp(cmd, "files") == 0 && argc == 3) {
        one_file("/proc/sysvipc/sem", "/proc/sysvipc", "/proc/self/..//sysvipc/./sem", "sysvipc/sem",
                 argv[2]);
        one_file("/proc/sys/kernel/sem", "/proc/sys/kernel", "/proc//sys/./kernel/../kernel/sem",
                 "sys/kernel/sem", argv[2]);
    } else if (strcmp(cmd, "writes") == 0 && argc == 2) {
        writes("/proc/sysvipc/sem");
        writes("/proc/sys/kernel/sem");
    } else {
        fprintf(stderr, "usage: see the comment at the top of ipcs_ops.c\n");
        return 2;
    }
    return 0;
}
