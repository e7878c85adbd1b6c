/* Semaphores through syscall(SYS_sem*, ...) only, and other system calls
 * through syscall() to show they pass through unchanged.
 *
 * usage: rawsys KEY
 * Stops at "ready set ID" (values 5 2 0 at that point) until a line
 * arrives on stdin. */
#include "common.h"
#include <sys/mman.h>

int main(int argc, char **argv)
{
    key_t key = key_arg(argc, argv);
    alarm(60);

    long id = syscall(SYS_semget, key, 3, IPC_CREAT | IPC_EXCL | 0600);
    CHECK(id >= 0);
    CHECK(syscall(SYS_semget, key, 3, IPC_CREAT | IPC_EXCL | 0600) == -1 && errno == EEXIST);
    CHECK(syscall(SYS_semget, key, 0, 0) == id);
    unsigned short vals[3] = {1, 2, 3};
    CHECK(syscall(SYS_semctl, id, 0, SETALL, vals) == 0);
    CHECK(syscall(SYS_semctl, id, 1, SETVAL, 7) == 0);
    struct sembuf ops[3] = {{0, 4, 0}, {2, -3, 0}, {1, -5, 0}};
    CHECK(syscall(SYS_semop, id, ops, 3) == 0);
    struct timespec ts = {0, 1000000};
    struct sembuf down = {2, -1, 0};
    CHECK(syscall(SYS_semtimedop, id, &down, 1, &ts) == -1 && errno == EAGAIN);
    CHECK(semtimedop(id, &down, 1, &ts) == -1 && errno == EAGAIN);
    struct semid_ds ds;
    CHECK(syscall(SYS_semctl, id, 0, IPC_STAT, &ds) == 0);
    CHECK(ds.sem_nsems == 3 && (ds.sem_perm.mode & 0777) == 0600 && ds.sem_perm.__key == key);
    unsigned short got[3];
    CHECK(syscall(SYS_semctl, id, 0, GETALL, got) == 0);
    printf("values %u %u %u\n", got[0], got[1], got[2]);
    CHECK(syscall(SYS_semctl, id, 0, GETPID, 0) == getpid());
    CHECK(syscall(SYS_semctl, id, 0, 0x100 | GETVAL, 0) == -1 && errno == EINVAL);
    handshake("set", (int)id);

    /* Other numbers pass through, with all six arguments. */
    CHECK(syscall(SYS_getpid) == getpid());
    CHECK(syscall(SYS_gettid) == gettid());
    char *p = (char *)syscall(SYS_mmap, NULL, 8192, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    p[8191] = 1;
    CHECK(syscall(SYS_munmap, p, 8192) == 0);
    errno = 0;
    CHECK(syscall(SYS_close, -1) == -1 && errno == EBADF);
    CHECK(syscall(SYS_write, 1, "passthrough ok\n", 15) == 15);

    CHECK(syscall(SYS_semctl, id, 0, IPC_RMID, 0) == 0);
    CHECK(syscall(SYS_semctl, id, 0, GETVAL, 0) == -1 && errno == EINVAL);
    CHECK(syscall(SYS_semget, key, 0, 0) == -1 && errno == ENOENT);
    printf("done\n");
    return 0;
}
