/* What a process is, as programs see it: run with and without
 * LD_PRELOAD=libshmsem_preload.so; tests/process_model.rs compares the
 * output with the kernel's.
 *
 *   dead_waiter MODE ROUNDS  a child blocks in semop(-1) (MODE "undo": with
 *                            SEM_UNDO); the parent waits until GETNCNT is 1,
 *                            SIGKILLs and reaps it, then posts (MODE "v",
 *                            "undo": semop +1; "setval": SETVAL 1; "twoop":
 *                            one call of +1 on sem 0 and +1 on sem 1;
 *                            "forked": semop +1, the waiter having forked a
 *                            child that outlives it) and
 *                            prints GETVAL and a wait-for-zero's errno.
 *   fd_loop CYCLES           semget(IPC_PRIVATE) / IPC_STAT / GETVAL / semop
 *                            / IPC_RMID, CYCLES times; prints the number of
 *                            open descriptors after 10 cycles and at the end.
 *   daemon                   takes a SEM_UNDO mutex, closes descriptors
 *                            3..1023, opens its own file (reusing the
 *                            numbers), lets 3 other processes try the mutex
 *                            with IPC_NOWAIT, does IPC_SET, checks its file's
 *                            mode, releases.
 *   exec_check SECS          prints every descriptor that names a shmsem
 *                            segment or registry (run after exec).
 */
#include "common.h"
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

static int getval(int id, int n) { return semctl(id, n, GETVAL); }

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    CHECK(d != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own */
}

static void wait_ncnt(int id, int n, int want)
{
    for (int i = 0; i < 200000; i++) {
        int c = semctl(id, n, GETNCNT);
        CHECK(c >= 0);
        if (c == want)
            return;
        usleep(100);
    }
    fprintf(stderr, "GETNCNT never reached %d\n", want);
    _exit(98);
}

static int dead_waiter(const char *mode, int rounds)
{
    int undo = strcmp(mode, "undo") == 0;
    int lost = 0;
    for (int r = 0; r < rounds; r++) {
        int id = semget(IPC_PRIVATE, 2, 0600);
        CHECK(id >= 0);
        pid_t c = fork();
        CHECK(c >= 0);
        if (c == 0) {
            if (strcmp(mode, "forked") == 0) {
                /* Known to the set first (an undo on sem 1), then a child
                 * that outlives us by a little, having inherited all we
                 * hold. */
                struct sembuf u = {1, 1, SEM_UNDO};
                CHECK(semop(id, &u, 1) == 0);
                pid_t me = getpid();
                pid_t g = fork();
                CHECK(g >= 0);
                if (g == 0) {
                    while (getppid() == me)
                        usleep(1000);
                    usleep(20000);
                    _exit(0);
                }
            }
            struct sembuf p = {0, -1, undo ? SEM_UNDO : 0};
            semop(id, &p, 1);
            _exit(0);
        }
        wait_ncnt(id, 0, 1);
        CHECK(kill(c, SIGKILL) == 0);
        int st;
        CHECK(waitpid(c, &st, 0) == c);
        CHECK(WIFSIGNALED(st));
        if (strcmp(mode, "setval") == 0) {
            union semun a = {.val = 1};
            CHECK(semctl(id, 0, SETVAL, a) == 0);
        } else if (strcmp(mode, "twoop") == 0) {
            struct sembuf v[2] = {{0, 1, 0}, {1, 1, 0}};
            CHECK(semop(id, v, 2) == 0);
        } else {
            struct sembuf v = {0, 1, 0};
            CHECK(semop(id, &v, 1) == 0);
        }
        int val = getval(id, 0);
        struct sembuf z = {0, 0, IPC_NOWAIT};
        int zr = semop(id, &z, 1);
        const char *ze = zr == 0 ? "0" : errname(errno);
        if (r == 0)
            printf("%s: after the post GETVAL %d, wait-for-zero %s, GETNCNT %d\n", mode, val,
                   ze, semctl(id, 0, GETNCNT));
        if (val != 1)
            lost++;
        CHECK(semctl(id, 0, IPC_RMID) == 0);
    }
    printf("%s: rounds where the dead waiter took the unit: %d of %d\n", mode, lost, rounds);
    return 0;
}

static int fd_loop(int cycles)
{
    int at10 = -1;
    for (int i = 0; i < cycles; i++) {
        int id = semget(IPC_PRIVATE, 1, 0600);
        if (id < 0) {
            printf("semget failed at cycle %d: %s\n", i, errname(errno));
            return 0;
        }
        struct semid_ds ds;
        union semun a = {.buf = &ds};
        CHECK(semctl(id, 0, IPC_STAT, a) == 0);
        CHECK(getval(id, 0) == 0);
        struct sembuf v = {0, 1, 0};
        CHECK(semop(id, &v, 1) == 0);
        if (semctl(id, 0, IPC_RMID) != 0) {
            printf("IPC_RMID failed at cycle %d: %s\n", i, errname(errno));
            return 0;
        }
        if (i == 9)
            at10 = count_fds();
    }
    int end = count_fds();
    /* The program's own open() still works. */
    int fd = open("/dev/null", O_RDONLY);
    CHECK(fd >= 0);
    close(fd);
    printf("descriptors: grew by %d from cycle 10 to cycle %d\n", end - at10, cycles);
    fprintf(stderr, "open descriptors: %d\n", end);
    return 0;
}

static int daemon_case(void)
{
    int id = semget(IPC_PRIVATE, 1, 0600);
    CHECK(id >= 0);
    union semun one = {.val = 1};
    CHECK(semctl(id, 0, SETVAL, one) == 0);
    struct sembuf p = {0, -1, SEM_UNDO};
    CHECK(semop(id, &p, 1) == 0);
    for (int fd = 3; fd < 1024; fd++)
        close(fd);
    /* The daemon's own files take the lowest numbers again. */
    char path[] = "/tmp/shmsem-daemon-XXXXXX";
    int mine = mkstemp(path);
    CHECK(mine >= 0);
    CHECK(fchmod(mine, 0600) == 0);
    int mine2 = open("/dev/null", O_RDONLY);
    CHECK(mine2 >= 0);
    int entered = 0;
    for (int k = 0; k < 3; k++) {
        pid_t c = fork();
        CHECK(c >= 0);
        if (c == 0) {
            struct sembuf t = {0, -1, SEM_UNDO | IPC_NOWAIT};
            _exit(semop(id, &t, 1) == 0 ? 1 : (errno == EAGAIN ? 0 : 2));
        }
        int st;
        CHECK(waitpid(c, &st, 0) == c);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) != 2);
        entered += WEXITSTATUS(st);
    }
    printf("daemon: others that entered the mutex it holds: %d\n", entered);
    printf("daemon: GETVAL while held %d\n", getval(id, 0));
    struct semid_ds ds;
    union semun a = {.buf = &ds};
    CHECK(semctl(id, 0, IPC_STAT, a) == 0);
    ds.sem_perm.mode = 0666;
    CHECK(semctl(id, 0, IPC_SET, a) == 0);
    struct stat st;
    CHECK(fstat(mine, &st) == 0);
    printf("daemon: its own file's mode after IPC_SET %o\n", st.st_mode & 0777);
    unlink(path);
    struct sembuf v = {0, 1, SEM_UNDO};
    CHECK(semop(id, &v, 1) == 0);
    printf("daemon: GETVAL after release %d\n", getval(id, 0));
    CHECK(semctl(id, 0, IPC_RMID) == 0);
    return 0;
}

static int exec_check(void)
{
    DIR *d = opendir("/proc/self/fd");
    CHECK(d != NULL);
    int found = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char link[64], target[512];
        snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n < 0)
            continue;
        target[n] = 0;
        if (strstr(target, "/dev/shm/shmsem.") != NULL) {
            printf("inherited descriptor %s -> %s\n", e->d_name, target);
            found++;
        }
    }
    closedir(d);
    printf("shmsem descriptors inherited: %d\n", found);
    return 0;
}

/* As root: a 0600 set in use (SEM_UNDO), then a child that drops to uid
 * 65534 and execs `helper exec_check` without the library. */
static int exec_helper(const char *self)
{
    int id = semget(IPC_PRIVATE, 1, 0600);
    CHECK(id >= 0);
    struct sembuf v = {0, 1, SEM_UNDO};
    CHECK(semop(id, &v, 1) == 0);
    struct semid_ds ds;
    union semun a = {.buf = &ds};
    CHECK(semctl(id, 0, IPC_STAT, a) == 0);
    pid_t c = fork();
    CHECK(c >= 0);
    if (c == 0) {
        unsetenv("LD_PRELOAD");
        CHECK(setgid(65534) == 0 && setuid(65534) == 0);
        execl(self, self, "exec_check", (char *)NULL);
        _exit(97);
    }
    int st;
    CHECK(waitpid(c, &st, 0) == c);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(semctl(id, 0, IPC_RMID) == 0);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 4 && strcmp(argv[1], "dead_waiter") == 0)
        return dead_waiter(argv[2], atoi(argv[3]));
    if (argc >= 3 && strcmp(argv[1], "fd_loop") == 0)
        return fd_loop(atoi(argv[2]));
    if (argc >= 2 && strcmp(argv[1], "daemon") == 0)
        return daemon_case();
    if (argc >= 2 && strcmp(argv[1], "exec_helper") == 0)
        return exec_helper(argv[0]);
    if (argc >= 2 && strcmp(argv[1], "exec_check") == 0)
        return exec_check();
    fprintf(stderr, "usage: process_model dead_waiter|fd_loop|daemon|exec_check ...\n");
    return 2;
}
